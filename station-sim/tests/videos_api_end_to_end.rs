//! `POST /api/videos` and `GET /api/videos/{id}` on a running `orchestrator run` (embedded
//! S3, no pipelines of its own): the demo's recording uploaded is checked in the
//! background with every order's expected status, its progress visible while it runs; a
//! file with no slip fails with its kind; a file that is no video (415), one over
//! `http.max_video_mb` (413), an unknown station (400) and an unknown upload (404) are
//! refused with JSON errors. Needs the release binaries and the plugin (scripts/test.sh).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use station_sim::pos::{free_port, http};
use station_sim::{Plan, Scenario, run};

const ROI: &str = "40,30,760,170";

fn start(dir: &Path, port: u16) -> run::Orchestrator {
    let pipelines = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let config = dir.join("orchestrator.toml");
    std::fs::write(
        &config,
        format!(
            "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
             [[stations]]\nid = \"station_1\"\nsource = \"rtsp://127.0.0.1:1/station_1\"\nroi = \"{ROI}\"\n\
             [storage]\nembedded_root = \"s3\"\nbucket = \"frames\"\n\
             [http]\nbind = \"127.0.0.1:{port}\"\nmax_video_mb = 16\n\
             [supervision]\nenabled = false\npipelines_dir = \"{}\"\nplugin_path = \"{}\"\n\
             [processing]\nframes_per_order = 4\n",
            pipelines.display(),
            run::release_dir().display()
        ),
    )
    .unwrap();
    let log = dir.join("orchestrator.log");
    let server = run::Orchestrator::spawn(&config, &log, &[]);
    let addr = format!("127.0.0.1:{port}");
    let up = Instant::now() + Duration::from_secs(30);
    while http(&addr, "GET", "/healthz", None).map(|r| r.0).ok() != Some(200) {
        assert!(Instant::now() < up, "the orchestrator did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// A POST of raw bytes (`http` sends JSON bodies).
fn post(addr: &str, path: &str, body: &[u8]) -> (u16, Value, String) {
    post_declared(addr, path, body.len(), body)
}

/// A POST whose Content-Length says `declared` bytes, of which `body` is sent.
fn post_declared(addr: &str, path: &str, declared: usize, body: &[u8]) -> (u16, Value, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // A refusal may come before the whole body is read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        head.to_owned(),
    )
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, None).unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Polls the upload until its check ends; the largest progress seen on the way.
fn wait_done(addr: &str, id: &str) -> (Value, u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = 0;
    loop {
        let (status, job) = get(addr, &format!("/api/videos/{id}"));
        assert_eq!(status, 200, "{job}");
        seen = seen.max(job["video_s"].as_u64().unwrap_or(0));
        if job["status"] == "done" || job["status"] == "failed" {
            return (job, seen);
        }
        assert!(Instant::now() < deadline, "still {job}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn an_uploaded_recording_is_checked_in_the_background_and_bad_uploads_are_refused() {
    let dir = std::env::temp_dir().join(format!("oa-videos-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Plan::new(Scenario::load(&run::scenario_path("demo.toml")).unwrap()).unwrap();
    plan.write_files(&dir).unwrap();
    let recording = dir.join("station_1.mkv");
    station_sim::record(&plan, 0, &recording).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _server = start(&dir, port);

    // Refusals, each JSON naming what to do.
    let (status, body, _) = post(&addr, "/api/videos", &[0x5a; 4096]);
    assert_eq!(status, 415, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Matroska"),
        "{body}"
    );
    let (status, body, _) = post(&addr, "/api/videos?station=nope", &[0x1A, 0x45, 0xDF, 0xA3]);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("station_1"),
        "{body}"
    );
    // Refused on its Content-Length, before a byte of it is read.
    let (status, body, _) = post_declared(&addr, "/api/videos", 17 << 20, &[]);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_video_mb = 16"),
        "{body}"
    );
    let (status, body) = get(&addr, "/api/videos/v0-0");
    assert_eq!(status, 404, "{body}");

    // The demo's recording: every order as the ground truth says.
    let bytes = std::fs::read(&recording).unwrap();
    let (status, job, head) = post(&addr, "/api/videos?station=station_1&name=demo.mkv", &bytes);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: /api/videos/{id}")),
        "{head}"
    );
    assert_eq!(job["bytes"], bytes.len() as u64);
    assert_eq!(job["name"], "demo.mkv");
    let (job, seen) = wait_done(&addr, &id);
    assert_eq!(job["status"], "done", "{job:#}");
    let duration = plan.stations[0].duration_s;
    assert!(
        seen as f64 >= duration - 2.0,
        "progress reached {seen} s of {duration}"
    );
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground_truth.json")).unwrap())
            .unwrap();
    let want: Vec<&Value> = truth["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["station_id"] == "station_1")
        .collect();
    let got = job["report"]["orders"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{job:#}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["order_id"], w["order_id"], "{g:#}");
        assert_eq!(g["status"], w["status"], "{g:#}");
    }
    assert_eq!(job["orders_stored"], want.len());

    // A video with no slip: failed, with its kind.
    let blank = dir.join("blank.mkv");
    station_sim::record_blank(&blank, 1280, 720, 5).unwrap();
    let (status, job, _) = post(&addr, "/api/videos", &std::fs::read(&blank).unwrap());
    assert_eq!(status, 202, "{job}");
    let blank_id = job["id"].as_str().unwrap().to_owned();
    let (job, _) = wait_done(&addr, &blank_id);
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["error_kind"], "no-order", "{job:#}");
    assert!(
        job["error"].as_str().unwrap().contains("no order slip"),
        "{job:#}"
    );

    // The listing: newest first, without reports.
    let (status, list) = get(&addr, "/api/videos");
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [blank_id.as_str(), id.as_str()]);
    assert!(list[1].get("report").is_none(), "{list:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
