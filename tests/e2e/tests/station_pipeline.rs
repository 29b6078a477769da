//! The station pipeline end to end, as the orchestrator runs it: `gst-launch-1.0 -e` with
//! `pipelines/rtsp-camera.pipeline` (and `rtsp-camera-keyframes.pipeline`), a camera over
//! loopback RTSP showing order slips, the real OCR models, and a real S3 server on
//! 127.0.0.1.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use oa_contract::CompletionReason;
use oa_e2e::*;
use oa_test_support::s3::TestS3;

struct Station {
    _dir: TempDir,
    server: TestS3,
    camera: RtspCamera,
    launch: Launch,
}

fn start_station(tag: &str, slips: &[Slip]) -> Station {
    start_station_with("rtsp-camera.pipeline", tag, slips)
}

fn start_station_with(pipeline_file: &str, tag: &str, slips: &[Slip]) -> Station {
    let dir = TempDir::new(tag);
    let root = dir.path().join("s3");
    std::fs::create_dir_all(&root).unwrap();
    let server = TestS3::start(&root, ACCESS_KEY, SECRET_KEY, &[BUCKET]);
    let srt = dir.path().join("slips.srt");
    write_srt(&srt, slips);
    let camera = RtspCamera::serve(&srt, 5);
    let pipeline = station_1_pipeline(
        pipeline_file,
        camera.url().to_owned(),
        server.endpoint(),
        format!("e2e-{tag}"),
    );
    let launch = Launch::start(&pipeline, dir.path().join("gst-launch.log"));
    Station {
        _dir: dir,
        server,
        camera,
        launch,
    }
}

fn wait_for_marker(station: &mut Station, order: &str, limit: Duration) {
    let marker = station
        .server
        .object_path(BUCKET, &format!("station_1/{order}/__EOS__"));
    let deadline = Instant::now() + limit;
    while !marker.exists() {
        station.launch.assert_running();
        assert!(
            Instant::now() < deadline,
            "no marker for order {order} within {limit:?}; gst-launch log:\n{}",
            station.launch.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_orders_with_each_completion_reason() {
    three_orders("rtsp-camera.pipeline", "reasons");
}

/// The camera sends a key frame every second: decoding only those gives the same orders.
#[test]
fn key_frames_only_pipeline_segments_the_same_orders() {
    three_orders("rtsp-camera-keyframes.pipeline", "keyframes");
}

fn three_orders(pipeline_file: &str, tag: &str) {
    // 384 for 8 s, 651 for 6 s, nothing for 12 s, 925 for 5 s, then the end.
    let mut station = start_station_with(
        pipeline_file,
        tag,
        &[
            Slip {
                start_s: 0.0,
                end_s: 8.0,
                text: "ORDER #384",
            },
            Slip {
                start_s: 8.0,
                end_s: 14.0,
                text: "ORDER #651",
            },
            Slip {
                start_s: 26.0,
                end_s: 31.0,
                text: "#925",
            },
        ],
    );
    // 651 is closed by the idle timer about 10 s after its last frame, while the camera
    // still sends blank frames.
    wait_for_marker(&mut station, "651", Duration::from_secs(90));
    wait_for_marker(&mut station, "384", Duration::from_secs(1));
    // Let 925 be shown in full, then stop the camera's client the way the orchestrator
    // does: SIGINT, which gst-launch -e turns into EOS.
    let shown_925 = station.server.object_path(BUCKET, "station_1/925");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shown_925.exists() {
        station.launch.assert_running();
        assert!(
            Instant::now() < deadline,
            "925 never started:\n{}",
            station.launch.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(7));
    station.launch.interrupt();
    let log = station.launch.log_text();
    let status = station.launch.wait(Duration::from_secs(60));
    assert!(status.success(), "gst-launch-1.0 failed: {status}\n{log}");
    drop(station.camera);

    let orders = stored_orders(&station.server.root().join(BUCKET).join(""));
    let ids: BTreeSet<&str> = orders.keys().map(String::as_str).collect();
    assert_eq!(ids, BTreeSet::from(["384", "651", "925"]), "{orders:#?}");
    for (order, shown_s, reason) in [
        ("384", 8, CompletionReason::NextOrder),
        ("651", 6, CompletionReason::IdleTimeout),
        ("925", 5, CompletionReason::EndOfStream),
    ] {
        let stored = &orders[order];
        let manifest = stored
            .manifest
            .as_ref()
            .unwrap_or_else(|| panic!("order {order} has no marker"));
        assert_eq!(manifest.reason, reason, "order {order}");
        assert_eq!(manifest.station_id, "station_1");
        assert_eq!(manifest.pipeline_instance, format!("e2e-{tag}"));
        let n = manifest.frame_count as i64;
        assert!(
            (n - shown_s).abs() <= 1,
            "order {order}: {n} frames for {shown_s} s on screen"
        );
        // The manifest names exactly the frames in the bucket: none lost, none extra.
        let listed: Vec<&str> = manifest.frames.iter().map(|f| f.key.as_str()).collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        assert_eq!(listed_sorted, stored.frame_keys, "order {order}");
        let seqs: Vec<u32> = manifest.frames.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (0..manifest.frame_count).collect::<Vec<_>>());
        assert!(manifest.frames.iter().all(|f| f.bytes > 1000));
    }
}

#[test]
fn sigint_mid_order_still_writes_its_marker() {
    let mut station = start_station(
        "sigint",
        &[Slip {
            start_s: 0.0,
            end_s: 120.0,
            text: "ORDER #777",
        }],
    );
    let order_dir = station.server.object_path(BUCKET, "station_1/777");
    let deadline = Instant::now() + Duration::from_secs(90);
    // Wait until a few frames of the order are stored, then interrupt mid-order.
    loop {
        let frames = std::fs::read_dir(&order_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("frame_"))
                    .count()
            })
            .unwrap_or(0);
        if frames >= 3 {
            break;
        }
        station.launch.assert_running();
        assert!(
            Instant::now() < deadline,
            "order 777 never stored 3 frames:\n{}",
            station.launch.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    station.launch.interrupt();
    let log = station.launch.log_text();
    let status = station.launch.wait(Duration::from_secs(60));
    assert!(status.success(), "gst-launch-1.0 failed: {status}\n{log}");
    let orders = stored_orders(&station.server.root().join(BUCKET));
    let stored = &orders["777"];
    let manifest = stored
        .manifest
        .as_ref()
        .expect("the open order's marker is written on SIGINT");
    assert_eq!(manifest.reason, CompletionReason::EndOfStream);
    assert!(manifest.frame_count >= 3);
    assert_eq!(manifest.frames.len(), stored.frame_keys.len());
}
