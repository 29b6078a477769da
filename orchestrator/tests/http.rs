//! The HTTP API over a real socket, with a real supervised pipeline, a real S3 server and
//! one processed order; `/metrics` must pass `promtool check metrics`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_contract::{CompletionReason, Manifest};
use orchestrator::consume::{self, Consumer, ConsumerDeps};
use orchestrator::http::{self, AppState};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::status::State;
use orchestrator::supervise::{self, StationSpec, StorageTarget, Supervisor};
use orchestrator::testing::{RecognizerDouble, Scratch, consumer_settings, put_frames};

const ACCESS: &str = "http-access";
const SECRET: &str = "http-secret-0123456789";

/// A blocking HTTP/1.1 GET; returns status, content type and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, ctype, raw[split + 4..].to_vec())
}

fn json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, ctype, body) = get(addr, path);
    assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_and_metrics_pass_promtool() {
    let scratch = Scratch::start("http", ACCESS, SECRET, &["frames"]).await;
    let dir = &scratch.dir;
    std::fs::write(
        dir.join("ok.pipeline"),
        "videotestsrc is-live=true ! fakesink\n",
    )
    .unwrap();

    // One station pipeline.
    let sup = Supervisor::start(
        supervise::Settings {
            gst_launch: "gst-launch-1.0".into(),
            pipelines_dir: dir.clone(),
            plugin_path: None,
            backoff: supervise::Settings::default_backoff(Duration::from_millis(100)),
            stable_after: Duration::from_secs(60),
            max_failed_restarts: 5,
            stall_timeout: Duration::ZERO,
            shutdown_grace: Duration::from_secs(3),
        },
        StorageTarget::default(),
        vec![StationSpec {
            id: "station_1".into(),
            source: String::new(),
            pipeline: "ok.pipeline".into(),
            roi: None,
            idle_timeout_ms: 1000,
            reuse_after_s: 1800,
            plays_once: false,
        }],
    )
    .unwrap();

    // One stored order, processed.
    let store = scratch.store.clone();
    let jpeg = scratch.jpeg(0);
    let entries = put_frames(
        &store,
        "frames",
        "station_1",
        "384",
        0,
        1,
        std::slice::from_ref(&jpeg),
    )
    .await
    .unwrap();
    let key = entries[0].key.clone();
    let manifest = Manifest::new(
        "station_1",
        "384",
        CompletionReason::IdleTimeout,
        entries,
        "station_1-1-1",
    );
    store.put_marker("frames", "", &manifest).await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let consumer = Consumer::new(ConsumerDeps {
        store,
        settings: consume::Settings {
            frames_per_order: 3,
            list_page_size: 1000,
            owner: "http-test".into(),
            recognition_retry: Duration::ZERO,
            retry_delay: Duration::from_millis(100),
            ..consumer_settings(&["station_1"], "frames", "")
        },
        // Sees one apple.
        recognizer: Arc::new(RecognizerDouble::sees(&[("apple", 1)])),
        orders: Arc::new(Orders::from_json(r#"{"384":[{"name":"apple","quantity":2}]}"#).unwrap()),
        inventory: Arc::new(
            Inventory::from_json(r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#)
                .unwrap(),
        ),
        metrics: metrics.clone(),
        detector: None,
        expected: None,
    });
    let (stop, rx) = tokio::sync::watch::channel(false);
    let consumer_task = tokio::spawn(consumer.clone().run(rx.clone().into()));

    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http_task = tokio::spawn(http::serve(
        listener,
        Arc::new(AppState {
            supervisor: Some(sup.clone()),
            consumer: Some(consumer.clone()),
            metrics,
            expected: None,
            auth: None,
            events: None,
            videos: None,
            reload: None,
        }),
        rx.into(),
    ));

    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.processed_count() < 1 || sup.statuses()[0].state != State::Running {
        assert!(Instant::now() < deadline, "order or pipeline not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let checks = tokio::task::spawn_blocking(move || {
        let (status, _, body) = get(addr, "/healthz");
        assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
        let (status, ready) = json(addr, "/readyz");
        assert_eq!(
            (status, &ready["ready"]),
            (200, &serde_json::json!(true)),
            "{ready}"
        );

        let (status, stations) = json(addr, "/api/stations");
        assert_eq!(status, 200);
        assert_eq!(stations[0]["station_id"], "station_1");
        assert_eq!(stations[0]["state"], "running");
        assert!(stations[0]["pid"].as_u64().is_some());

        let (status, orders) = json(addr, "/api/orders?station=station_1&status=mismatch");
        assert_eq!(status, 200);
        assert_eq!(orders.as_array().unwrap().len(), 1, "{orders}");
        let (_, none) = json(addr, "/api/orders?status=validated");
        assert_eq!(none.as_array().unwrap().len(), 0);
        let (_, none) = json(addr, "/api/orders?station=station_9");
        assert_eq!(none.as_array().unwrap().len(), 0);

        let (status, order) = json(addr, "/api/orders/station_1/384");
        assert_eq!(status, 200);
        assert_eq!(order["status"], "mismatch");
        assert_eq!(order["quantity_mismatch"][0]["expected"], 2);
        assert_eq!(order["selected_frames"][0], key.as_str());

        let (status, ctype, body) = get(addr, "/api/orders/station_1/384/frames/0");
        assert_eq!((status, ctype.as_str()), (200, "image/jpeg"));
        assert_eq!(body, jpeg);
        assert_eq!(get(addr, "/api/orders/station_1/384/frames/1").0, 404);
        assert_eq!(get(addr, "/api/orders/station_1/999").0, 404);
        assert_eq!(get(addr, "/nope").0, 404);

        let (status, ctype, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = String::from_utf8(body).unwrap();
        for want in [
            "oa_orders_total{station=\"station_1\",status=\"mismatch\"} 1",
            "oa_pipeline_up{station=\"station_1\"} 1",
            "oa_pipeline_restarts_total{station=\"station_1\"} 0",
            "oa_frames_uploaded_total{station=\"station_1\"} 1",
            "oa_orders_by_pipeline_instance_total{station=\"station_1\"} 1",
            // The supervisor's current child, `{station}-{pid}-{start}`: one series.
            &format!(
                "oa_pipeline_info{{station=\"station_1\",pipeline_instance=\"station_1-{}-1\"}} 1",
                std::process::id()
            ),
            "oa_order_latency_seconds_count{station=\"station_1\"} 1",
            "oa_order_queue_seconds_count{station=\"station_1\"} 1",
            "oa_recognition_seconds_count{station=\"station_1\"} 1",
            "oa_pipeline_uptime_seconds{station=\"station_1\"} ",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(
            !text.contains("station_1-1-1"),
            "the manifest's pipeline instance is no label:\n{text}"
        );
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) is installed");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let mut res = checks.await;

    // The store goes away: not ready, and the reason says so; back again: ready.
    if res.is_ok() {
        scratch.server.stop().await;
        let ready = move |want: u16| {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = json(addr, "/readyz");
                if status == want {
                    return body;
                }
                assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let down = tokio::task::spawn_blocking(move || ready(503)).await;
        res = down.map(|body| {
            let reasons = body["reasons"].as_array().unwrap();
            assert!(
                reasons
                    .iter()
                    .any(|r| r.as_str().unwrap().starts_with("storage: ")),
                "{body}"
            );
        });
        if res.is_ok() {
            scratch.server.restart().await.unwrap();
            res = tokio::task::spawn_blocking(move || {
                ready(200);
            })
            .await;
        }
    }
    let _ = stop.send(true);
    sup.shutdown().await;
    let _ = consumer_task.await;
    let _ = http_task.await;
    res.unwrap();
}
