//! Selection of long orders in bounded memory (`consume::frames`): the frames of an order
//! are streamed from a real S3 server (oa_s3server on 127.0.0.1, SigV4) through the
//! scorer, and the choice is the one made over all frames in memory at once, while at
//! most `MAX_FRAMES_IN_MEMORY` JPEG bodies are held.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_contract::{CompletionReason, FrameEntry, Manifest, frame_key};
use orchestrator::consume::frames::{self, MAX_FRAMES_IN_MEMORY, Selection};
use orchestrator::consume::{Consumer, ConsumerDeps, Settings};
use orchestrator::detector::{Detector, DetectorConfig};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::result::OrderResult;
use orchestrator::select::{self, FrameScore, SelectError};
use orchestrator::testing::{
    FIRST_FRAME_UNIX_MS, RecognizerDouble, Scratch, consumer_settings, put_frames,
};
use tokio::sync::watch;

const ACCESS: &str = "long-access";
const SECRET: &str = "long-secret-0123456789";
const BUCKET: &str = "frames";
const K: usize = 4;

/// `n` 160x120 JPEGs of `videotestsrc pattern=NAME` (a moving ball, noise, ...), made by
/// gst-launch-1.0 in `dir`.
fn gst_frames(dir: &Path, pattern: &str, n: usize) -> Vec<Vec<u8>> {
    let out = dir.join(format!("gen-{pattern}"));
    orchestrator::testing::videotestsrc_jpegs(&out, &[&format!("pattern={pattern}")], (160, 120), n)
}

/// `n` distinct frames: mostly a moving ball, with noise, colour bars, a grey gradient
/// and a corrupt JPEG now and then, so that the scores differ.
fn order_frames(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let ball = gst_frames(dir, "ball", n);
    let snow = gst_frames(dir, "snow", n / 13 + 1);
    let bars = gst_frames(dir, "smpte", 1);
    let grey = gst_frames(dir, "gradient", 1);
    (0..n)
        .map(|i| match i {
            _ if i % 97 == 50 => b"not a jpeg".to_vec(),
            _ if i % 13 == 7 => snow[i / 13].clone(),
            _ if i % 31 == 11 => bars[0].clone(),
            _ if i % 41 == 3 => grey[0].clone(),
            _ => ball[i].clone(),
        })
        .collect()
}

/// Manifest entries for `n` frames of `order`, 1 ms apart (stored or not).
fn entries(order: &str, n: usize) -> Vec<FrameEntry> {
    (0..n as u32)
        .map(|seq| {
            let unix_ms = FIRST_FRAME_UNIX_MS + u64::from(seq);
            FrameEntry {
                key: frame_key("", "station_1", order, unix_ms, seq).unwrap(),
                seq,
                unix_ms,
                bytes: 0,
            }
        })
        .collect()
}

/// Stores `bodies` as `order`'s frames, 16 PUTs at a time.
async fn store_frames(s: &Scratch, order: &str, bodies: &[Vec<u8>]) -> Vec<FrameEntry> {
    let mut tasks = tokio::task::JoinSet::new();
    let per = bodies.len().div_ceil(16).max(1);
    for (c, chunk) in bodies.chunks(per).enumerate() {
        let (store, order, chunk) = (s.store.clone(), order.to_owned(), chunk.to_vec());
        tasks.spawn(async move {
            put_frames(
                &store,
                BUCKET,
                "station_1",
                &order,
                (c * per) as u32,
                1,
                &chunk,
            )
            .await
            .unwrap()
        });
    }
    let mut all = vec![];
    while let Some(part) = tasks.join_next().await {
        all.extend(part.unwrap());
    }
    all.sort_by_key(|e| e.seq);
    let keys = |es: &[FrameEntry]| es.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
    assert!(
        keys(&all) == keys(&entries(order, bodies.len())),
        "stored keys"
    );
    all
}

/// The choice over all of `bodies` at once, as (manifest index, score), given the
/// manifest index of each body.
fn in_memory(
    bodies: &[Vec<u8>],
    index: &[usize],
    detector: Option<&Detector>,
) -> Result<Vec<(usize, FrameScore)>, SelectError> {
    select::select_frames_scored_with(bodies, K, detector)
        .map(|v| v.into_iter().map(|(i, s)| (index[i], s)).collect())
}

/// Checks that `got` chose `want` with the right keys and bodies, within the ceiling.
fn check(got: &Selection, want: &[(usize, FrameScore)], es: &[FrameEntry], bodies: &[Vec<u8>]) {
    let chosen = got.chosen.as_ref().expect("a choice");
    let as_pairs: Vec<(usize, FrameScore)> = chosen.iter().map(|c| (c.index, c.score)).collect();
    assert_eq!(as_pairs, want, "streamed and in-memory selections differ");
    for c in chosen {
        assert_eq!(c.frame.key, es[c.index].key);
        assert!(c.frame.jpeg == bodies[c.index], "body of frame {}", c.index);
    }
    assert!(
        got.peak_bodies <= MAX_FRAMES_IN_MEMORY,
        "{} bodies held at once (ceiling {MAX_FRAMES_IN_MEMORY})",
        got.peak_bodies
    );
    assert!(got.peak_bodies >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_order_is_selected_as_in_memory_within_the_ceiling() {
    let s = Scratch::start("long-select", ACCESS, SECRET, &[BUCKET]).await;
    let n = 2_000;
    let bodies = order_frames(&s.dir, n);
    let es = store_frames(&s, "900", &bodies).await;
    let everything: Vec<usize> = (0..n).collect();

    // Short orders (bodies kept, the boundary) and longer ones (chosen frames fetched
    // again), as prefixes of the long one.
    for len in [
        1,
        3,
        K,
        12,
        MAX_FRAMES_IN_MEMORY,
        MAX_FRAMES_IN_MEMORY + 1,
        200,
    ] {
        let got = frames::select(&s.store, BUCKET, &es[..len], K, None)
            .await
            .unwrap();
        assert_eq!(got.loaded, len);
        assert!(got.missing.is_empty());
        let want = in_memory(&bodies[..len], &everything, None).unwrap();
        check(&got, &want, &es, &bodies);
    }

    let t = Instant::now();
    let got = frames::select(&s.store, BUCKET, &es, K, None)
        .await
        .unwrap();
    eprintln!(
        "{n} frames streamed and selected in {:?}, at most {} bodies held",
        t.elapsed(),
        got.peak_bodies
    );
    assert_eq!(got.loaded, n);
    let want = in_memory(&bodies, &everything, None).unwrap();
    assert_eq!(want.len(), K);
    check(&got, &want, &es, &bodies);
    // The long order is streamed: a choice kept in memory would hold all of it.
    assert!(got.peak_bodies < n);
    assert!(frames::peak_bodies_held() <= MAX_FRAMES_IN_MEMORY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_corrupt_frames_of_a_long_order_are_reported_as_before() {
    let s = Scratch::start("long-missing", ACCESS, SECRET, &[BUCKET]).await;
    let n = 300;
    let bodies = order_frames(&s.dir, n);
    let es = entries("901", n);
    // Every 10th frame (and the last 5) is never stored: missing (404).
    let stored: Vec<usize> = (0..n).filter(|i| i % 10 != 4 && *i < n - 5).collect();
    for &i in &stored {
        s.store
            .put(BUCKET, &es[i].key, bodies[i].clone(), "image/jpeg")
            .await
            .unwrap();
    }
    let got = frames::select(&s.store, BUCKET, &es, K, None)
        .await
        .unwrap();
    let mut missing: Vec<String> = (0..n)
        .filter(|i| !stored.contains(i))
        .map(|i| es[i].key.clone())
        .collect();
    missing.sort();
    assert_eq!(got.missing, missing);
    assert_eq!(got.loaded, stored.len());
    let present: Vec<Vec<u8>> = stored.iter().map(|&i| bodies[i].clone()).collect();
    let want = in_memory(&present, &stored, None).unwrap();
    check(&got, &want, &es, &bodies);

    // Nothing stored: no frames, every one missing.
    let none = frames::select(&s.store, BUCKET, &entries("902", 50), K, None)
        .await
        .unwrap();
    assert_eq!(none.loaded, 0);
    assert_eq!(none.missing.len(), 50);
    assert_eq!(none.chosen.unwrap_err(), SelectError::NoFrames);

    // Only corrupt JPEGs: the same error as over all frames at once.
    let corrupt = vec![b"garbage".to_vec(); 40];
    let ces = store_frames(&s, "903", &corrupt).await;
    let got = frames::select(&s.store, BUCKET, &ces, K, None)
        .await
        .unwrap();
    assert_eq!(
        got.chosen.unwrap_err(),
        select::select_frames_scored(&corrupt, K).unwrap_err()
    );
    assert!(got.peak_bodies <= MAX_FRAMES_IN_MEMORY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_detector_a_long_order_is_selected_as_in_memory_within_the_ceiling() {
    let s = Scratch::start("long-detector", ACCESS, SECRET, &[BUCKET]).await;
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_yolo.onnx");
    // The stand-in model (tests/fixtures/make_tiny_yolo.py): a bright frame is dominated
    // by a "person", bright cells are "items".
    let detector = Arc::new(
        Detector::new(&DetectorConfig::new(
            model,
            vec!["person".into(), "item".into()],
            vec!["person".into()],
        ))
        .unwrap_or_else(|e| panic!("{e} (ORT_DYLIB_PATH: scripts/setup.sh)")),
    );
    let n = 240;
    let mut bodies = order_frames(&s.dir, n);
    let white = gst_frames(&s.dir, "white", 1).remove(0);
    let checkers = gst_frames(&s.dir, "checkers-8", 1).remove(0);
    for i in (0..n).step_by(9) {
        bodies[i] = white.clone();
    }
    for i in (5..n).step_by(23) {
        bodies[i] = checkers.clone();
    }
    let es = store_frames(&s, "904", &bodies).await;
    let everything: Vec<usize> = (0..n).collect();
    for len in [20, n] {
        let got = frames::select(&s.store, BUCKET, &es[..len], K, Some(detector.clone()))
            .await
            .unwrap();
        let want = in_memory(&bodies[..len], &everything, Some(&detector)).unwrap();
        check(&got, &want, &es, &bodies);
        assert!(
            got.chosen.unwrap().iter().all(|c| bodies[c.index] != white),
            "a frame dominated by a person was chosen"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_recognises_the_frames_chosen_from_a_long_order() {
    let s = Scratch::start("long-consumer", ACCESS, SECRET, &[BUCKET]).await;
    let n = 400;
    let bodies = order_frames(&s.dir, n);
    let es = store_frames(&s, "384", &bodies).await;
    let m = Manifest::new(
        "station_1",
        "384",
        CompletionReason::MaxDuration,
        es.clone(),
        "test-1",
    );
    s.store.put_marker(BUCKET, "", &m).await.unwrap();
    let consumer = Consumer::new(ConsumerDeps {
        store: s.store.clone(),
        settings: Settings {
            frames_per_order: K,
            ..consumer_settings(&["station_1"], BUCKET, "")
        },
        recognizer: Arc::new(RecognizerDouble::sees(&[("apple", 1)])),
        orders: Arc::new(Orders::from_json(r#"{"384":[{"name":"apple","quantity":1}]}"#).unwrap()),
        inventory: Arc::new(
            Inventory::from_json(r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#)
                .unwrap(),
        ),
        metrics: Arc::new(Metrics::new()),
        detector: None,
        expected: None,
    });
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.clone().run(rx.into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.processed_count() < 1 {
        assert!(Instant::now() < deadline, "no result for the long order");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.unwrap();
    let r: OrderResult = serde_json::from_slice(
        &s.server
            .read_object(BUCKET, "results/station_1/384.json")
            .unwrap(),
    )
    .unwrap();
    let everything: Vec<usize> = (0..n).collect();
    let want: Vec<String> = in_memory(&bodies, &everything, None)
        .unwrap()
        .into_iter()
        .map(|(i, _)| es[i].key.clone())
        .collect();
    assert_eq!(r.selected_frames, want);
    assert!(frames::peak_bodies_held() <= MAX_FRAMES_IN_MEMORY);
}
