//! A restart over a long history (issue 12): 100,000 past orders at two stations, each
//! with its two index entries, a frame, its marker and its result, are seeded as files
//! into the folder of the orchestrator's embedded S3 server (s3s-fs serves a folder;
//! writing 500,000 objects through HTTP would take minutes), with the checkpoints a clean
//! stop leaves. The orchestrator binary is then started on that folder (embedded S3 with
//! SigV4, the `openai` backend against a VLM TEST DOUBLE on 127.0.0.1, no model can run
//! here as a VLM), one new order is stored through S3 as the sink stores it, and its
//! result must be served by `GET /api/orders/{station}/{order}` within 10 s of the start,
//! with the orchestrator's peak RSS (VmHWM) under 150 MB.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oa_contract::{CompletionReason, FrameEntry, IndexKind, Manifest};
use orchestrator::store::Store;
use orchestrator::testing::History;

const ACCESS: &str = "history-access";
const SECRET: &str = "history-secret-0123456789";
const BUCKET: &str = "frames";
const STATIONS: [&str; 2] = ["st0", "st1"];
const ORDERS_PER_STATION: u64 = 50_000;
const DAY_MS: u64 = 86_400_000;
const NEW_ORDER: &str = "990001";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 64x48 JPEG made by gst-launch-1.0.
fn small_jpeg(dir: &Path) -> Vec<u8> {
    orchestrator::testing::videotestsrc_jpegs(&dir.join("frame"), &["pattern=18"], (64, 48), 1)
        .remove(0)
}

/// Seeds the history; returns the time of its newest marker.
fn seed(bucket_root: &Path, jpeg: &[u8]) -> u64 {
    orchestrator::testing::seed_history(&History {
        bucket_root,
        stations: &STATIONS,
        orders_per_station: ORDERS_PER_STATION,
        span_ms: 100 * DAY_MS,
        end_ms: now_ms() - 3_600_000,
        jpeg,
        mismatch_every: 0,
    })
}

/// An OpenAI-compatible TEST DOUBLE for a VLM: every request sees one apple.
async fn vlm_double() -> u16 {
    use axum::http::header;
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let body = serde_json::json!({
                "id": "history", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant",
                    "content": r#"{"items":[{"name":"apple","quantity":1}]}"#}}]
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Peak resident memory so far, in MB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kb / 1024.0
    }
}

fn start(dir: &Path, s3_port: u16, http_port: u16, vlm_port: u16) -> Running {
    std::fs::write(
        dir.join("ok.pipeline"),
        "# {station_id}\nvideotestsrc is-live=true ! fakesink\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("orders.json"),
        format!(r#"{{"{NEW_ORDER}":[{{"name":"apple","quantity":1}}]}}"#),
    )
    .unwrap();
    std::fs::write(
        dir.join("inventory.json"),
        r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#,
    )
    .unwrap();
    let mut toml = format!(
        r#"orders_file = "orders.json"
inventory_file = "inventory.json"

[supervision]
pipelines_dir = "{dir}"
stall_timeout_s = 3600

[http]
bind = "127.0.0.1:{http_port}"

[storage]
endpoint = "http://127.0.0.1:{s3_port}"
embedded_root = "{dir}/s3"
bucket = "{BUCKET}"

[recognition]
backend = "openai"

[recognition.openai]
endpoint = "http://127.0.0.1:{vlm_port}/v1"
model = "history"
"#,
        dir = dir.display()
    );
    for s in STATIONS {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"{s}\"\nsource = \"none\"\npipeline = \"ok.pipeline\"\n"
        ));
    }
    let cfg = dir.join("orchestrator.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = l2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    Running { child, log }
}

/// Stores one order as the sink does: `begin` entry, frame, `marker` entry, marker.
async fn store_new_order(store: &Store, jpeg: &[u8]) {
    let (station, order) = (STATIONS[0], NEW_ORDER);
    let t = now_ms();
    let put = |key: String, body: Vec<u8>| async move {
        store
            .put(BUCKET, &key, body, "application/octet-stream")
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"))
    };
    put(
        oa_contract::index_key("", station, order, IndexKind::Begin, t).unwrap(),
        b"{}".to_vec(),
    )
    .await;
    let frame = oa_contract::frame_key("", station, order, t, 0).unwrap();
    put(frame.clone(), jpeg.to_vec()).await;
    put(
        oa_contract::index_key("", station, order, IndexKind::Marker, t + 1).unwrap(),
        b"{}".to_vec(),
    )
    .await;
    let m = Manifest::new(
        station,
        order,
        CompletionReason::NextOrder,
        vec![FrameEntry {
            key: frame,
            seq: 0,
            unix_ms: t,
            bytes: jpeg.len() as u64,
        }],
        "history-2",
    );
    store
        .put_marker(BUCKET, "", &m)
        .await
        .expect("marker stored");
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_over_100000_past_orders_processes_a_new_one_within_10_s_under_150_mb() {
    let dir = orchestrator::testing::scratch_dir("history");
    let bucket_root = dir.join("s3").join(BUCKET);
    std::fs::create_dir_all(&bucket_root).unwrap();
    let jpeg = small_jpeg(&dir);
    let t = Instant::now();
    seed(&bucket_root, &jpeg);
    let seeded = t.elapsed();
    let files = 2 * ORDERS_PER_STATION * 5;
    println!(
        "seeded {} orders ({files} objects) in {:.1} s",
        2 * ORDERS_PER_STATION,
        seeded.as_secs_f64()
    );

    let vlm_port = vlm_double().await;
    let (s3_port, http_port) = (free_port(), free_port());
    let started = Instant::now();
    let orchestrator = start(&dir, s3_port, http_port, vlm_port);
    let ready = loop {
        if let Some((200, _)) = http_get(http_port, "/readyz").await {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready within 10 s:\n{}",
            orchestrator.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // SAFETY: set before the first AWS SDK client of this test binary reads them.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let store = Store::connect(Some(&endpoint), "us-east-1", true).await;
    store_new_order(&store, &jpeg).await;
    let stored = started.elapsed();
    let path = format!("/api/orders/{}/{NEW_ORDER}", STATIONS[0]);
    let (done, body) = loop {
        if let Some((200, body)) = http_get(http_port, &path).await {
            break (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new order was not processed within 10 s of the start:\n{}",
            orchestrator.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["status"], "validated", "{body}");
    // A past order, never loaded into memory, is read from the store on demand.
    let (code, old) = http_get(http_port, &format!("/api/orders/{}/17", STATIONS[1]))
        .await
        .expect("a reply");
    assert_eq!(code, 200, "{old}");
    assert!(
        old.contains(r#""order_id": "17""#) || old.contains(r#""order_id":"17""#),
        "{old}"
    );
    let peak = orchestrator.peak_rss_mb();
    let (_, metrics) = http_get(http_port, "/metrics").await.expect("metrics");
    let lists: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("oa_list_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!(
        "ready {:.2} s after start; new order stored at {:.2} s, its result served at {:.2} s; \
         peak RSS {peak:.1} MB; {lists} LIST requests in all",
        ready.as_secs_f64(),
        stored.as_secs_f64(),
        done.as_secs_f64(),
    );
    let log = orchestrator.log();
    assert!(
        !log.contains("listing the station once in full"),
        "the checkpoints were not used:\n{log}"
    );
    assert!(peak < 150.0, "peak RSS {peak:.1} MB:\n{log}");
    // One poll per station per second, each one LIST request: nowhere near one per order.
    assert!(lists < 200.0, "{lists} LIST requests:\n{log}");
    drop(orchestrator);
    std::fs::remove_dir_all(&dir).unwrap();
}
