//! Order latency and marker discovery, measured against a real S3 server.
//!
//! ```text
//! cargo run --release -p orchestrator --example bench_latency -- [--orders N] [--poll-ms MS]
//!     [--finished N] [--threads N] [--det-max-side PX]
//! ```
//!
//! Starts `oa_s3server` (s3s-fs, SigV4) on 127.0.0.1 and the library consumer with the
//! `labels` recogniser (shipped PP-OCR models), 3 frames per order, claims on, the
//! orchestrator's production LIST page size (1000). For each of N orders, one at a time: three
//! 1280x720 JPEG frames with item labels, then the `__EOS__` marker. Latency is from the
//! completed marker PUT to the completed result PUT (both seen in the server's PUT log);
//! discovery is from the marker PUT to the consumer's marker callback. Two modes: polling
//! only (the safety net), and with the pipeline's `order-stored` hint as the supervisor
//! passes it. Then LIST requests per poll with 20 and with `--finished` finished orders
//! in the bucket. Then, with `--vlm-latency-ms A,B,...` (default `0,2000`), the same
//! orders through the `openai` backend against a fixed-latency VLM TEST DOUBLE (answers
//! after exactly that long, on its own runtime): the client's own cost per order is the
//! recognition time less the server's latency (scaling, base64, JSON, HTTP, parsing).
//! The last line is `BENCH_JSON {...}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oa_contract::{CompletionReason, FrameEntry, Manifest, marker_key};
use oa_s3server::{Options, S3Server};
use orchestrator::config::{Backend, LabelsConfig, OpenAiConfig, RecognitionConfig};
use orchestrator::consume::{Consumer, ConsumerDeps, Settings};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::result::{OrderResult, OrderStatus};
use orchestrator::store::{Layout, Store};
use orchestrator::testing::put_frames;
use tokio::sync::watch;

const ACCESS: &str = "bench-access";
const SECRET: &str = "bench-secret-0123456789";
const BUCKET: &str = "frames";
const STATION: &str = "station_1";

fn render(dir: &std::path::Path, name: &str, texts: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{name}.jpg"));
    let mut args: Vec<String> =
        "-q videotestsrc pattern=white num-buffers=1 ! video/x-raw,width=1280,height=720"
            .split(' ')
            .map(String::from)
            .collect();
    for (i, t) in texts.iter().enumerate() {
        let ypos = 0.1 + 0.8 * i as f64 / texts.len() as f64;
        args.extend([
            "!".into(),
            "textoverlay".into(),
            format!("text={t}"),
            "font-desc=Sans Bold 40".into(),
            "halignment=position".into(),
            "valignment=position".into(),
            "xpos=0.1".into(),
            format!("ypos={ypos:.2}"),
            "color=0xff000000".into(),
            "draw-outline=false".into(),
            "draw-shadow=false".into(),
        ]);
    }
    args.extend(
        [
            "!",
            "videoconvert",
            "!",
            "jpegenc",
            "quality=85",
            "!",
            "filesink",
        ]
        .map(String::from),
    );
    args.push(format!("location={}", out.display()));
    let ok = std::process::Command::new("gst-launch-1.0")
        .args(&args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gst-launch-1.0 {args:?}");
    std::fs::read(out).unwrap()
}

/// A VLM TEST DOUBLE with a fixed latency: every `POST` is answered after `latency` with
/// the right items of these orders and a `usage`; the size of each request body is kept.
struct FixedVlm {
    addr: std::net::SocketAddr,
    request_bytes: Arc<Mutex<Vec<usize>>>,
}

impl FixedVlm {
    async fn start(latency: Duration) -> FixedVlm {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let request_bytes = Arc::new(Mutex::new(Vec::new()));
        let sizes = request_bytes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sizes = sizes.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let sizes = sizes.clone();
                            async move {
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                sizes.lock().unwrap().push(body.len());
                                tokio::time::sleep(latency).await;
                                let content = r#"{"items":[{"name":"green apple","quantity":2},{"name":"banana","quantity":1}]}"#;
                                let reply = serde_json::json!({"object": "chat.completion",
                                "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                                "usage": {"prompt_tokens": 1500, "completion_tokens": 24}});
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(bytes::Bytes::from(reply.to_string())))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FixedVlm {
            addr,
            request_bytes,
        }
    }

    fn recognizer(
        &self,
        inventory: &Arc<Inventory>,
        image_max_side: u32,
    ) -> Arc<dyn orchestrator::recognize::Recognizer> {
        let mut c = RecognitionConfig::with_backend(Backend::OpenAi);
        c.openai = OpenAiConfig {
            endpoint: format!("http://{}", self.addr),
            model: "fixed-latency-double".into(),
            image_max_side,
            timeout_ms: 30_000,
            ..OpenAiConfig::default()
        };
        orchestrator::recognize::build(&c, inventory.clone()).expect("openai backend")
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// When each key's PUT was first seen completed (polled every 2 ms from the server's log).
struct PutWatch {
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl PutWatch {
    fn start(server: &Arc<S3Server>) -> PutWatch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let server = server.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let log = server.put_log();
                let now = Instant::now();
                for r in &log[n..] {
                    s.lock().unwrap().push((r.clone(), now));
                }
                n = log.len();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        PutWatch { seen, stop }
    }

    fn when(&self, key: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| *t)
    }
}

impl Drop for PutWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn put_order(store: &Store, order: &str, frames: &[Vec<u8>]) -> Vec<FrameEntry> {
    put_frames(store, BUCKET, STATION, order, 0, 1, frames)
        .await
        .unwrap()
}

async fn put_marker(store: &Store, order: &str, entries: Vec<FrameEntry>) {
    let m = Manifest::new(
        STATION,
        order,
        CompletionReason::NextOrder,
        entries,
        "bench-1",
    );
    store.put_marker(BUCKET, "", &m).await.unwrap();
}

struct Run {
    latency_ms: Vec<f64>,
    discovery_ms: Vec<f64>,
    recognize_ms: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn run_orders(
    server: &Arc<S3Server>,
    store: &Store,
    consumer: &Arc<Consumer>,
    marker_seen: &Arc<Mutex<Vec<Instant>>>,
    frames: &[Vec<u8>],
    tag: &str,
    orders: usize,
    hint: bool,
) -> Run {
    let watch = PutWatch::start(server);
    let mut run = Run {
        latency_ms: vec![],
        discovery_ms: vec![],
        recognize_ms: vec![],
    };
    for i in 0..orders {
        let order = format!("{tag}{i}");
        let entries = put_order(store, &order, frames).await;
        let seen_before = marker_seen.lock().unwrap().len();
        put_marker(store, &order, entries).await;
        if hint {
            consumer.hint(STATION, &order);
        }
        let marker = marker_key("", STATION, &order).unwrap();
        let result = format!("results/{STATION}/{order}.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (t_marker, t_result) = loop {
            if let (Some(m), Some(r)) = (watch.when(&marker), watch.when(&result)) {
                break (m, r);
            }
            assert!(Instant::now() < deadline, "no result for {order}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let t_found = marker_seen.lock().unwrap().get(seen_before).copied();
        run.latency_ms
            .push(t_result.duration_since(t_marker).as_secs_f64() * 1000.0);
        if let Some(f) = t_found {
            run.discovery_ms
                .push(f.saturating_duration_since(t_marker).as_secs_f64() * 1000.0);
        }
        let body = server.read_object(BUCKET, &result).unwrap();
        let r: OrderResult = serde_json::from_slice(&body).unwrap();
        assert_eq!(r.validation.status, OrderStatus::Validated, "{r:?}");
        run.recognize_ms.push(r.timings_ms.recognize as f64);
    }
    run
}

/// A consumer running on the current runtime, with the times its marker callback fired.
struct Running {
    consumer: Arc<Consumer>,
    marker_seen: Arc<Mutex<Vec<Instant>>>,
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(deps: ConsumerDeps) -> Running {
        let consumer = Consumer::new(deps);
        let marker_seen = Arc::new(Mutex::new(Vec::new()));
        let ms = marker_seen.clone();
        consumer.on_marker(Box::new(move |_| ms.lock().unwrap().push(Instant::now())));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(consumer.clone().run(stop_rx.into()));
        Running {
            consumer,
            marker_seen,
            stop_tx,
            task,
        }
    }
}

fn settings(poll: Duration) -> Settings {
    Settings {
        stations: vec![STATION.into()],
        layout: Layout {
            bucket: BUCKET.into(),
            prefix: String::new(),
            results_bucket: BUCKET.into(),
            results_prefix: String::new(),
        },
        poll_interval: poll,
        max_concurrent_orders: 4,
        frames_per_order: 3,
        claim: true,
        claim_ttl: Duration::from_secs(600),
        list_page_size: 1000,
        owner: "bench".into(),
        recognition_retry: Duration::ZERO,
        retry_delay: Duration::from_millis(100),
        orphan_after: None,
        expected_wait: Duration::ZERO,
        reuse_after: Duration::from_secs(1_800),
    }
}

fn main() {
    let mut orders = 20usize;
    let mut poll_ms = 250u64;
    let mut finished = 300usize;
    let mut threads = orchestrator::config::DEFAULT_LABELS_THREADS;
    let mut det_max_side = orchestrator::config::DEFAULT_LABELS_DET_MAX_SIDE;
    let mut vlm_latencies: Vec<u64> = vec![0, 2000];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || -> u64 { args.next().and_then(|v| v.parse().ok()).expect("number") };
        match a.as_str() {
            "--orders" => orders = v() as usize,
            "--poll-ms" => poll_ms = v(),
            "--finished" => finished = v() as usize,
            "--threads" => threads = v() as usize,
            "--det-max-side" => det_max_side = v() as u32,
            "--vlm-latency-ms" => {
                vlm_latencies = args
                    .next()
                    .expect("list")
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse().expect("milliseconds"))
                    .collect()
            }
            _ => panic!(
                "usage: bench_latency [--orders N] [--poll-ms MS] [--finished N] [--threads N] \
                 [--det-max-side PX] [--vlm-latency-ms A,B,...]"
            ),
        }
    }
    // SAFETY: single-threaded here.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let dir = std::env::temp_dir().join(format!("oa-bench-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frames = vec![
        render(&dir, "a", &["green apple", "green apple", "banana"]),
        render(&dir, "b", &["green apple", "banana"]),
        render(&dir, "c", &["banana", "green apple"]),
    ];
    // The server's own workers, as a remote store would have: the consumer's runtime
    // below does not lend them to it.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt.block_on(S3Server::start(Options {
        buckets: vec![BUCKET.into()],
        ..Options::new(dir.join("s3"), ACCESS, SECRET)
    }));
    let server = Arc::new(server.unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let poll = Duration::from_millis(poll_ms);

    let mut expected = String::from("{");
    let vlm_tags: Vec<String> = vlm_latencies.iter().map(|l| format!("v{l}_")).collect();
    let mut tags: Vec<&str> = vec!["w", "p", "h"];
    tags.extend(vlm_tags.iter().map(String::as_str));
    for tag in tags {
        for i in 0..orders {
            expected.push_str(&format!(
                r#""{tag}{i}":[{{"name":"green apple","quantity":2}},{{"name":"banana","quantity":1}}],"#
            ));
        }
    }
    expected.pop();
    expected.push('}');
    let inventory = Arc::new(
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},{"id":"2","name":"banana"}]}"#,
        )
        .unwrap(),
    );
    let recognizer: Arc<dyn orchestrator::recognize::Recognizer> = Arc::new(
        orchestrator::recognize::labels::LabelsRecognizer::new(
            &LabelsConfig {
                threads,
                det_max_side,
                ..LabelsConfig::default()
            },
            inventory.clone(),
        )
        .expect("labels backend"),
    );

    let out = rt.block_on(async {
        let store = Store::connect(Some(&server.endpoint()), "us-east-1", true).await;
        // The openai backend, against a server answering in a fixed time (first: the
        // finished orders below would be orders to do for a consumer that never saw them).
        let mut vlm = Vec::new();
        for (&latency, tag) in vlm_latencies.iter().zip(&vlm_tags) {
            let double = FixedVlm::start(Duration::from_millis(latency)).await;
            let Running {
                consumer,
                marker_seen,
                stop_tx,
                task,
            } = Running::start(ConsumerDeps {
                store: store.clone(),
                settings: settings(poll),
                recognizer: double.recognizer(&inventory, OpenAiConfig::default().image_max_side),
                orders: Arc::new(Orders::from_json(&expected).unwrap()),
                inventory: inventory.clone(),
                metrics: Arc::new(Metrics::new()),
                detector: None,
                expected: None,
            });
            let run = run_orders(
                &server,
                &store,
                &consumer,
                &marker_seen,
                &frames,
                tag,
                orders,
                true,
            )
            .await;
            stop_tx.send(true).unwrap();
            let _ = task.await;
            let sizes = double.request_bytes.lock().unwrap().clone();
            vlm.push((latency, run, sizes));
        }
        // The request as stored frames make it, for the size before scaling.
        let unscaled = {
            let double = FixedVlm::start(Duration::ZERO).await;
            let r = double.recognizer(&inventory, 0);
            let f: Vec<orchestrator::recognize::Frame> = frames
                .iter()
                .enumerate()
                .map(|(i, jpeg)| orchestrator::recognize::Frame {
                    key: format!("f{i}"),
                    jpeg: jpeg.clone(),
                })
                .collect();
            r.recognize(&f).await.unwrap();
            double.request_bytes.lock().unwrap()[0]
        };
        let metrics = Arc::new(Metrics::new());
        let Running {
            consumer,
            marker_seen,
            stop_tx,
            task,
        } = Running::start(ConsumerDeps {
            store: store.clone(),
            settings: settings(poll),
            recognizer: recognizer.clone(),
            orders: Arc::new(Orders::from_json(&expected).unwrap()),
            inventory: inventory.clone(),
            metrics: metrics.clone(),
            detector: None,
            expected: None,
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Warm-up order: the first OCR run pays ONNX Runtime's lazy initialisation.
        let _ = run_orders(
            &server,
            &store,
            &consumer,
            &marker_seen,
            &frames,
            "w",
            1,
            true,
        )
        .await;
        let polled = run_orders(
            &server,
            &store,
            &consumer,
            &marker_seen,
            &frames,
            "p",
            orders,
            false,
        )
        .await;
        let hinted = run_orders(
            &server,
            &store,
            &consumer,
            &marker_seen,
            &frames,
            "h",
            orders,
            true,
        )
        .await;

        // Requests per poll, with few and with many finished orders in the bucket.
        let polls = 20u64;
        let mut per_poll = vec![];
        for target in [2 * orders + 1, finished.max(2 * orders + 1)] {
            let have = 2 * orders + 1;
            for i in have..target {
                // A finished order: frames, marker and result (the consumer only LISTs it).
                let order = format!("f{i}");
                let e = put_order(&store, &order, &vec![vec![0xff, 0xd8, 0xff, 0xd9]; 3]).await;
                store
                    .put(
                        BUCKET,
                        &format!("results/{STATION}/{order}.json"),
                        b"{}".to_vec(),
                        "application/json",
                    )
                    .await
                    .unwrap();
                put_marker(&store, &order, e).await;
            }
            tokio::time::sleep(poll * 2).await;
            let before = metrics.list_requests(STATION);
            let t = Instant::now();
            tokio::time::sleep(poll * polls as u32).await;
            let lists = metrics.list_requests(STATION) - before;
            let ticks = t.elapsed().as_secs_f64() / poll.as_secs_f64();
            per_poll.push((target, lists as f64 / ticks));
        }
        stop_tx.send(true).unwrap();
        let _ = task.await;

        (polled, hinted, per_poll, vlm, unscaled)
    });
    let (polled, hinted, per_poll, vlm, unscaled) = out;

    println!(
        "{orders} orders, 3 frames each (1280x720 JPEG), labels recogniser, poll {poll_ms} ms"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8}",
        "", "p50 ms", "p95 ms", "min", "max"
    );
    let row = |name: &str, v: &[f64]| {
        println!(
            "{:<44} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            name,
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 0.0),
            pct(v, 1.0)
        )
    };
    row("latency marker->result, polling only", &polled.latency_ms);
    row(
        "latency marker->result, with order-stored hint",
        &hinted.latency_ms,
    );
    row(
        "  of which recognition (labels OCR, 3 frames)",
        &hinted.recognize_ms,
    );
    row("discovery delay, polling only", &polled.discovery_ms);
    row("discovery delay, with hint", &hinted.discovery_ms);
    let j = |v: &[f64]| {
        format!(
            "{{\"p50\":{:.1},\"p95\":{:.1},\"min\":{:.1},\"max\":{:.1}}}",
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 0.0),
            pct(v, 1.0)
        )
    };
    let mut vlm_json = Vec::new();
    for (latency, run, sizes) in &vlm {
        let less = |v: &[f64]| v.iter().map(|x| x - *latency as f64).collect::<Vec<_>>();
        let client = less(&run.recognize_ms);
        let total = less(&run.latency_ms);
        row(
            &format!("openai, server {latency} ms: marker->result"),
            &run.latency_ms,
        );
        row("  less the server's latency", &total);
        row("  client's own cost of recognition", &client);
        let sent = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        vlm_json.push(format!(
            "{{\"server_ms\":{latency},\"latency\":{},\"overhead\":{},\"client\":{},\"request_bytes\":{sent:.0}}}",
            j(&run.latency_ms),
            j(&total),
            j(&client)
        ));
    }
    if let Some((_, _, sizes)) = vlm.first() {
        let sent = sizes.iter().sum::<usize>() / sizes.len().max(1);
        println!(
            "openai request per order: {unscaled} bytes as stored, {sent} bytes scaled to {} px",
            OpenAiConfig::default().image_max_side
        );
    }
    for (n, r) in &per_poll {
        println!("LIST requests per poll with {n:>4} finished orders: {r:.2}");
    }
    println!(
        "BENCH_JSON {{\"latency\":{{\"orders\":{orders},\"poll_ms\":{poll_ms},\"threads\":{threads},\"det_max_side\":{det_max_side},\"polled\":{},\"hinted\":{},\"recognize\":{},\"discovery_polled\":{},\"discovery_hinted\":{},\"lists_per_poll\":[{}],\"vlm\":[{}],\"vlm_unscaled_bytes\":{unscaled}}}}}",
        j(&polled.latency_ms),
        j(&hinted.latency_ms),
        j(&hinted.recognize_ms),
        j(&polled.discovery_ms),
        j(&hinted.discovery_ms),
        per_poll
            .iter()
            .map(|(n, r)| format!("{{\"finished\":{n},\"per_poll\":{r:.3}}}"))
            .collect::<Vec<_>>()
            .join(","),
        vlm_json.join(",")
    );
    drop(rt);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
