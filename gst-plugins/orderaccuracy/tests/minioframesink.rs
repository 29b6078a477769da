//! `minioframesink` against a real S3 endpoint (s3s-fs with SigV4) on 127.0.0.1.
//!
//! Ordering claims ("the marker is stored after every frame") are checked against the
//! server's log of completed PUTs, never against timing.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstorderaccuracy::events::OrderComplete;
use gstorderaccuracy::meta::OrderTag;
use oa_contract::{CompletionReason, IndexKind, Manifest, frame_key, marker_key, result_key};
use oa_s3server::S3Server;
use oa_test_support::s3::{BUCKET, SECRET_KEY, ScratchS3};

fn init() {
    oa_test_support::s3::init_with_credentials(gstorderaccuracy::plugin_register_static);
}

fn server_with_secret(secret: &str) -> ScratchS3 {
    init();
    ScratchS3::start_with_secret("minioframesink", secret)
}

fn server() -> ScratchS3 {
    server_with_secret(SECRET_KEY)
}

fn jpeg(i: u32) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8, 0xff, 0xe0];
    v.extend(format!("frame {i}").bytes());
    v.extend(std::iter::repeat_n((i % 251) as u8, 64 + i as usize));
    v.extend([0xff, 0xd9]);
    v
}

fn frame(i: u32, station: &str, order: Option<&str>, unix_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(jpeg(i));
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_seconds(i.into()));
        OrderTag {
            station_id: station.into(),
            order_id: order.map(Into::into),
            unix_ms,
        }
        .attach(b);
    }
    buffer
}

fn complete(station: &str, order: &str, frame_count: u32) -> gst::Event {
    complete_for(station, order, frame_count, CompletionReason::NextOrder)
}

fn complete_for(
    station: &str,
    order: &str,
    frame_count: u32,
    reason: CompletionReason,
) -> gst::Event {
    gst::Event::from(&OrderComplete::new(station, order, reason, frame_count))
}

struct Run {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst::Element,
}

fn pipeline(endpoint: &str, props: &[(&str, glib::Value)]) -> Run {
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("image/jpeg").build())
        .format(gst::Format::Time)
        .build();
    let mut sink = gst::ElementFactory::make("minioframesink")
        .property("endpoint-uri", endpoint)
        .property("bucket", BUCKET)
        .property("retry-backoff", 50u32)
        .property("retry-backoff-max", 500u32)
        .property("request-timeout", 2_000u32);
    for (name, value) in props {
        sink = sink.property(name, value.clone());
    }
    let sink = sink.build().unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    Run {
        pipeline,
        src,
        sink,
    }
}

use gst::glib;

#[derive(Debug)]
struct Outcome {
    error: Option<(glib::Error, String)>,
    order_stored: Vec<gst::Structure>,
}

/// Runs the bus until EOS or an error; `at_eos` runs the moment EOS is seen.
fn wait_end(run: &Run, limit: Duration, mut at_eos: impl FnMut()) -> Outcome {
    let bus = run.pipeline.bus().unwrap();
    let deadline = Instant::now() + limit;
    let mut order_stored = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = bus
            .timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
            .unwrap_or_else(|| panic!("no EOS or error within {limit:?}"));
        match msg.view() {
            gst::MessageView::Eos(_) => {
                at_eos();
                return Outcome {
                    error: None,
                    order_stored,
                };
            }
            gst::MessageView::Error(e) => {
                return Outcome {
                    error: Some((
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default(),
                    )),
                    order_stored,
                };
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "order-stored") {
                    order_stored.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
}

fn u64_prop(run: &Run, name: &str) -> u64 {
    run.sink.property::<u64>(name)
}

fn manifest(server: &S3Server, station: &str, order: &str) -> Manifest {
    let key = marker_key("", station, order).unwrap();
    let body = server
        .read_object(BUCKET, &key)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    Manifest::from_json(&body).unwrap()
}

/// Frames and markers stored, in order, station index entries left out.
fn objects_put(s: &S3Server) -> Vec<String> {
    s.put_log()
        .into_iter()
        .filter(|k| !k.contains(&format!("/{}/", oa_contract::index::INDEX_DIR)))
        .collect()
}

fn objects(s: &S3Server) -> usize {
    objects_put(s).len()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stores_frames_then_marker_with_contract_keys() {
    let s = server();
    let run = pipeline(
        &s.endpoint(),
        &[
            ("prefix", "cam/".to_value()),
            ("max-in-flight", 8u32.to_value()),
            ("pipeline-instance", "test-instance".to_value()),
        ],
    );
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for (n, order) in ["384", "385"].into_iter().enumerate() {
        for i in 0..12u32 {
            let idx = n as u32 * 100 + i;
            run.src
                .push_buffer(frame(idx, "s1", Some(order), 1_000 + u64::from(idx)))
                .unwrap();
        }
        assert!(run.src.send_event(complete("s1", order, 12)));
    }
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);

    let log = s.put_log();
    assert_eq!(
        log.len(),
        30,
        "24 frames, 2 markers, 4 index entries: {log:#?}"
    );
    let mut total_bytes = 0;
    for (n, order) in ["384", "385"].into_iter().enumerate() {
        // The station index announces each order's first frame and its marker, on the
        // frames' clock, in keys the orchestrator parses back.
        let first = 1_000 + n as u64 * 100;
        for (kind, at) in [(IndexKind::Begin, first), (IndexKind::Marker, first + 11)] {
            let key = oa_contract::index_key("cam/", "s1", order, kind, at).unwrap();
            assert!(log.contains(&key), "{key} not stored: {log:#?}");
            let e = oa_contract::parse_index_key("cam/", &key).unwrap();
            assert_eq!((e.order.as_str(), e.kind, e.unix_ms), (order, kind, at));
            let body: serde_json::Value =
                serde_json::from_slice(&s.read_object(BUCKET, &key).unwrap()).unwrap();
            assert_eq!(body["kind"], kind.as_str());
        }
        let marker = marker_key("cam/", "s1", order).unwrap();
        assert_eq!(marker, format!("cam/s1/{order}/__EOS__"));
        let marker_at = log
            .iter()
            .position(|k| *k == marker)
            .expect("marker stored");
        let body = s.read_object(BUCKET, &marker).unwrap();
        let m = Manifest::from_json(&body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["station_id"], "s1");
        assert_eq!(v["order_id"], order);
        assert_eq!(v["reason"], "next-order");
        assert_eq!(v["frame_count"], 12);
        assert_eq!(v["pipeline_instance"], "test-instance");
        assert_eq!(v["first_unix_ms"], 1_000 + n as u64 * 100);
        assert_eq!(v["last_unix_ms"], 1_000 + n as u64 * 100 + 11);
        assert_eq!(m.frames.len(), 12);
        for (i, f) in m.frames.iter().enumerate() {
            let idx = n as u32 * 100 + i as u32;
            let key = frame_key("cam/", "s1", order, 1_000 + u64::from(idx), i as u32).unwrap();
            assert_eq!(f.key, key);
            assert_eq!(f.seq, i as u32);
            assert_eq!(f.unix_ms, 1_000 + u64::from(idx));
            let stored = s.read_object(BUCKET, &key).unwrap();
            assert_eq!(stored, jpeg(idx));
            assert_eq!(f.bytes, stored.len() as u64);
            total_bytes += f.bytes;
            let frame_at = log.iter().position(|k| *k == key).expect("frame stored");
            assert!(frame_at < marker_at, "{key} stored after {marker}");
        }
        let msg = &out.order_stored[n];
        assert_eq!(msg.get::<&str>("station-id").unwrap(), "s1");
        assert_eq!(msg.get::<&str>("order-id").unwrap(), order);
        assert_eq!(msg.get::<u32>("frame-count").unwrap(), 12);
        assert_eq!(msg.get::<&str>("reason").unwrap(), "next-order");
        assert_eq!(msg.get::<&str>("key").unwrap(), marker);
    }
    assert_eq!(u64_prop(&run, "frames-uploaded"), 24);
    assert_eq!(u64_prop(&run, "markers-written"), 2);
    assert_eq!(u64_prop(&run, "bytes-uploaded"), total_bytes);
    assert_eq!(u64_prop(&run, "frames-dropped-untagged"), 0);
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn pre_roll_frames_go_to_the_next_order_first() {
    let s = server();
    let run = pipeline(&s.endpoint(), &[("pre-roll", 2u32.to_value())]);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..4 {
        run.src
            .push_buffer(frame(i, "s1", None, 10 + u64::from(i)))
            .unwrap();
    }
    for i in 4..6 {
        run.src
            .push_buffer(frame(i, "s1", Some("42"), 10 + u64::from(i)))
            .unwrap();
    }
    assert!(run.src.send_event(complete("s1", "42", 2)));
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);

    let m = manifest(&s, "s1", "42");
    let got: Vec<(u32, u64)> = m.frames.iter().map(|f| (f.seq, f.unix_ms)).collect();
    assert_eq!(got, vec![(0, 12), (1, 13), (2, 14), (3, 15)]);
    for (f, i) in m.frames.iter().zip(2..) {
        assert_eq!(s.read_object(BUCKET, &f.key).unwrap(), jpeg(i));
    }
    assert_eq!(u64_prop(&run, "frames-dropped-untagged"), 2);
    assert_eq!(objects(&s), 5, "4 frames and the marker: {:?}", s.put_log());
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn untagged_frames_are_not_uploaded() {
    let s = server();
    let run = pipeline(&s.endpoint(), &[("pre-roll", 0u32.to_value())]);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..3 {
        run.src.push_buffer(frame(i, "s1", None, 1)).unwrap();
    }
    // No meta at all.
    run.src
        .push_buffer(gst::Buffer::from_mut_slice(jpeg(9)))
        .unwrap();
    // IDs that must never become keys.
    run.src
        .push_buffer(frame(10, "s1", Some("../etc"), 1))
        .unwrap();
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(s.put_log().is_empty(), "{:?}", s.put_log());
    assert_eq!(u64_prop(&run, "frames-dropped-untagged"), 5);
    assert_eq!(u64_prop(&run, "frames-uploaded"), 0);
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn s3_outage_mid_order_loses_nothing() {
    let s = server();
    let run = pipeline(
        &s.endpoint(),
        &[
            ("retry-attempts", 40u32.to_value()),
            ("max-in-flight", 3u32.to_value()),
        ],
    );
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..5 {
        run.src
            .push_buffer(frame(i, "s2", Some("77"), 500 + u64::from(i)))
            .unwrap();
    }
    wait_for("the first frames", Duration::from_secs(10), || {
        objects(&s) == 5
    });
    s.stop();
    for i in 5..10 {
        run.src
            .push_buffer(frame(i, "s2", Some("77"), 500 + u64::from(i)))
            .unwrap();
    }
    assert!(run.src.send_event(complete("s2", "77", 10)));
    run.src.end_of_stream().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(objects(&s), 5, "stored while the server was down");
    s.restart();
    let out = wait_end(&run, Duration::from_secs(60), || {});
    assert!(out.error.is_none(), "{:?}", out.error);

    let m = manifest(&s, "s2", "77");
    assert_eq!(m.frame_count, 10);
    let log = s.put_log();
    let marker_at = log
        .iter()
        .position(|k| *k == marker_key("", "s2", "77").unwrap())
        .unwrap();
    for (i, f) in m.frames.iter().enumerate() {
        assert_eq!(f.seq, i as u32);
        assert_eq!(s.read_object(BUCKET, &f.key).unwrap(), jpeg(i as u32));
        assert!(log.iter().position(|k| *k == f.key).unwrap() < marker_at);
    }
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn eos_is_let_through_only_after_everything_is_stored() {
    let s = server();
    let run = pipeline(&s.endpoint(), &[("retry-attempts", 40u32.to_value())]);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    // Started (the bucket was checked), then the endpoint goes away: nothing can be
    // stored until it is back, so an early EOS would find the log incomplete. Order 9
    // starts during the outage: the sink cannot learn whether it was stored before, waits
    // a bounded time, treats it as new and keeps its frames until the store is back.
    s.stop();
    for i in 0..4 {
        run.src
            .push_buffer(frame(i, "s3", Some("9"), 100 + u64::from(i)))
            .unwrap();
    }
    assert!(run.src.send_event(complete("s3", "9", 4)));
    run.src.end_of_stream().unwrap();
    let restarter = {
        let endpoint_down = Duration::from_millis(1500);
        std::thread::spawn(move || std::thread::sleep(endpoint_down))
    };
    restarter.join().unwrap();
    s.restart();
    let mut at_eos = Vec::new();
    let out = wait_end(&run, Duration::from_secs(60), || at_eos = objects_put(&s));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(at_eos.len(), 5, "{at_eos:#?}");
    assert_eq!(at_eos[4], marker_key("", "s3", "9").unwrap());
    let m = manifest(&s, "s3", "9");
    assert_eq!(m.frame_count, 4);
    for (i, f) in m.frames.iter().enumerate() {
        assert_eq!(f.seq, i as u32);
        assert_eq!(s.read_object(BUCKET, &f.key).unwrap(), jpeg(i as u32));
    }
    run.pipeline.set_state(gst::State::Null).unwrap();
}

fn start_error(run: &Run) -> (glib::Error, String) {
    let started = Instant::now();
    assert!(run.pipeline.set_state(gst::State::Playing).is_err());
    let out = wait_end(run, Duration::from_secs(20), || panic!("EOS"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let _ = run.pipeline.set_state(gst::State::Null);
    out.error.expect("an error")
}

#[test]
fn wrong_secret_key_is_a_clear_not_authorized_error() {
    let s = server_with_secret("a-different-secret");
    let run = pipeline(&s.endpoint(), &[]);
    let (err, debug) = start_error(&run);
    assert!(
        err.matches(gst::ResourceError::NotAuthorized),
        "{err:?} {debug}"
    );
    let text = err.message();
    assert!(text.contains("refused the credential"), "{text}");
    assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(text.contains(&s.endpoint()), "{text}");
}

#[test]
fn missing_bucket_is_a_clear_not_found_error() {
    let s = server();
    let run = pipeline(&s.endpoint(), &[("bucket", "no-such-bucket".to_value())]);
    let (err, debug) = start_error(&run);
    assert!(err.matches(gst::ResourceError::NotFound), "{err:?} {debug}");
    assert!(
        err.message().contains("'no-such-bucket'"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("does not exist"),
        "{}",
        err.message()
    );
}

#[test]
fn unreachable_endpoint_is_reported_quickly() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let run = pipeline(&endpoint, &[]);
    let (err, debug) = start_error(&run);
    assert!(
        err.matches(gst::ResourceError::OpenWrite),
        "{err:?} {debug}"
    );
    assert!(err.message().contains(&endpoint), "{}", err.message());
}

#[test]
fn exhausted_retries_fail_the_pipeline_naming_the_key() {
    let s = server();
    let run = pipeline(
        &s.endpoint(),
        &[
            ("retry-attempts", 1u32.to_value()),
            ("retry-backoff", 10u32.to_value()),
        ],
    );
    run.pipeline.set_state(gst::State::Playing).unwrap();
    s.stop();
    run.src.push_buffer(frame(0, "s4", Some("5"), 77)).unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || panic!("EOS"));
    let (err, _) = out.error.expect("an error");
    assert!(err.matches(gst::ResourceError::Write), "{err:?}");
    // The first PUT to give up names its key: the frame's, or the index entry announcing
    // the order, queued just before it.
    let key = frame_key("", "s4", "5", 77, 0).unwrap();
    let entry = oa_contract::index_key("", "s4", "5", oa_contract::IndexKind::Begin, 77).unwrap();
    assert!(
        err.message().contains(&key) || err.message().contains(&entry),
        "{}",
        err.message()
    );
    run.pipeline.set_state(gst::State::Null).unwrap();
}

/// The orchestrator claims orders with `If-None-Match: *`; the test server must honour it.
#[test]
fn server_honours_if_none_match() {
    use aws_sdk_s3::primitives::ByteStream;
    let s = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(s.endpoint())
            .load()
            .await;
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let claim = || {
            client
                .put_object()
                .bucket(BUCKET)
                .key("results/s1/1.json")
                .if_none_match("*")
                .body(ByteStream::from_static(b"{}"))
                .send()
        };
        claim().await.unwrap();
        let err = claim().await.unwrap_err();
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    });
    assert_eq!(s.put_log(), vec!["results/s1/1.json".to_owned()]);
}

/// Pushes frames `range` of `order` (frame `i` taken at `unix_ms` 10_000 + i), then its
/// OrderComplete.
fn push_segment(run: &Run, order: &str, range: std::ops::Range<u32>, reason: CompletionReason) {
    let n = range.len() as u32;
    for i in range {
        run.src
            .push_buffer(frame(i, "s1", Some(order), 10_000 + u64::from(i)))
            .unwrap();
    }
    assert!(run.src.send_event(complete_for("s1", order, n, reason)));
}

/// The frames of `m`, in manifest order, as (seq, unix_ms); checks that each is stored
/// with the bytes of frame `unix_ms - 10_000`.
fn stored_frames(server: &S3Server, m: &Manifest) -> Vec<(u32, u64)> {
    for f in &m.frames {
        let i = (f.unix_ms - 10_000) as u32;
        assert_eq!(
            server.read_object(BUCKET, &f.key).unwrap(),
            jpeg(i),
            "{}",
            f.key
        );
        assert_eq!(
            f.key,
            frame_key("", "s1", &m.order_id, f.unix_ms, f.seq).unwrap()
        );
    }
    m.frames.iter().map(|f| (f.seq, f.unix_ms)).collect()
}

#[test]
fn a_repeated_order_id_continues_its_order_in_a_superset_marker() {
    let s = server();
    let run = pipeline(&s.endpoint(), &[("pipeline-instance", "run-1".to_value())]);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    push_segment(&run, "A", 0..3, CompletionReason::IdleTimeout);
    push_segment(&run, "B", 3..5, CompletionReason::NextOrder);
    // The slip of A is shown again after its marker was written.
    push_segment(&run, "A", 5..7, CompletionReason::EndOfStream);
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);

    let a = manifest(&s, "s1", "A");
    assert_eq!(
        stored_frames(&s, &a),
        [
            (0, 10_000),
            (1, 10_001),
            (2, 10_002),
            (3, 10_005),
            (4, 10_006)
        ]
    );
    assert_eq!(a.frame_count, 5);
    assert_eq!(
        (a.first_unix_ms, a.last_unix_ms),
        (Some(10_000), Some(10_006))
    );
    assert_eq!(a.reason, CompletionReason::EndOfStream);
    let b = manifest(&s, "s1", "B");
    assert_eq!(stored_frames(&s, &b), [(0, 10_003), (1, 10_004)]);

    let marker = marker_key("", "s1", "A").unwrap();
    assert_eq!(s.put_log().iter().filter(|k| **k == marker).count(), 2);
    let counts: Vec<(String, u32)> = out
        .order_stored
        .iter()
        .map(|m| {
            (
                m.get::<String>("order-id").unwrap(),
                m.get::<u32>("frame-count").unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("A".into(), 3), ("B".into(), 2), ("A".into(), 5)]);
    assert_eq!(u64_prop(&run, "orders-repeated"), 1);
    assert_eq!(u64_prop(&run, "frames-uploaded"), 7);
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_restarted_sink_continues_an_order_from_its_stored_marker() {
    let s = server();
    let first = pipeline(&s.endpoint(), &[("pipeline-instance", "run-1".to_value())]);
    first.pipeline.set_state(gst::State::Playing).unwrap();
    push_segment(&first, "A", 0..3, CompletionReason::IdleTimeout);
    first.src.end_of_stream().unwrap();
    let out = wait_end(&first, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);
    first.pipeline.set_state(gst::State::Null).unwrap();
    let before = manifest(&s, "s1", "A");

    // A new pipeline (a restart): it knows A only from the bucket.
    let second = pipeline(&s.endpoint(), &[("pipeline-instance", "run-2".to_value())]);
    second.pipeline.set_state(gst::State::Playing).unwrap();
    push_segment(&second, "A", 3..5, CompletionReason::NextOrder);
    push_segment(&second, "C", 5..6, CompletionReason::EndOfStream);
    second.src.end_of_stream().unwrap();
    let out = wait_end(&second, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);

    let a = manifest(&s, "s1", "A");
    assert_eq!(a.frames[..3], before.frames[..]);
    assert_eq!(
        stored_frames(&s, &a),
        [
            (0, 10_000),
            (1, 10_001),
            (2, 10_002),
            (3, 10_003),
            (4, 10_004)
        ]
    );
    assert_eq!(
        (a.first_unix_ms, a.last_unix_ms),
        (Some(10_000), Some(10_004))
    );
    assert_eq!(a.reason, CompletionReason::NextOrder);
    assert_eq!(a.pipeline_instance, "run-2");
    // C is new: its seq starts at 0.
    let c = manifest(&s, "s1", "C");
    assert_eq!(stored_frames(&s, &c), [(0, 10_005)]);
    assert_eq!(u64_prop(&second, "orders-repeated"), 1);
    second.pipeline.set_state(gst::State::Null).unwrap();
}

const HOUR_MS: u64 = 3_600_000;

/// Pushes frames `range` of `order` (frame `i` taken at `t0 + i` ms), then its
/// OrderComplete.
fn push_at(run: &Run, order: &str, t0: u64, range: std::ops::Range<u32>) {
    let n = range.len() as u32;
    for i in range {
        let buffer = frame(i, "s1", Some(order), t0 + u64::from(i));
        run.src.push_buffer(buffer).unwrap();
    }
    assert!(run.src.send_event(complete("s1", order, n)));
}

/// `(key, seq, unix_ms)` of the frames `m` lists; each is stored with the bytes of frame
/// `i` for the `unix_ms` it was pushed at (`t0 + i`, with `t0` from `starts`).
fn listed(server: &S3Server, m: &Manifest, starts: &[u64]) -> Vec<(u32, u64)> {
    for f in &m.frames {
        assert_eq!(
            f.key,
            frame_key("", "s1", &m.order_id, f.unix_ms, f.seq).unwrap()
        );
        let t0 = starts
            .iter()
            .copied()
            .filter(|&t| t <= f.unix_ms)
            .max()
            .unwrap();
        let i = (f.unix_ms - t0) as u32;
        assert_eq!(
            server.read_object(BUCKET, &f.key).unwrap(),
            jpeg(i),
            "{}",
            f.key
        );
    }
    m.frames.iter().map(|f| (f.seq, f.unix_ms)).collect()
}

/// The simulated clock is the frames' own `unix_ms`: the same slip number an hour after its
/// order's last frame is another order, its frames and marker under `A.2`; the number seen
/// again a few seconds later (the slip briefly out of view) continues `A.2`; a restarted
/// sink finds `A.2` with one LIST and puts the next return two hours later in `A.3`.
#[test]
fn a_number_that_comes_back_after_reuse_after_is_a_new_order() {
    let s = server();
    let t0 = 1_700_000_000_000;
    let t1 = t0 + HOUR_MS;
    let t1b = t1 + 5_000;
    let run = pipeline(&s.endpoint(), &[("pipeline-instance", "run-1".to_value())]);
    assert_eq!(run.sink.property::<u32>("reuse-after"), 1_800);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    push_at(&run, "A", t0, 0..3);
    push_at(&run, "A", t1, 0..2);
    push_at(&run, "B", t1 + 2_000, 0..1);
    push_at(&run, "A", t1b, 2..4);
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(u64_prop(&run, "orders-reused"), 1);
    assert_eq!(u64_prop(&run, "orders-repeated"), 1, "A.2 continued once");
    run.pipeline.set_state(gst::State::Null).unwrap();

    // The first order is untouched: written once, its three frames, no occurrence.
    let first = manifest(&s, "s1", "A");
    assert_eq!(first.occurrence, None);
    assert_eq!(
        listed(&s, &first, &[t0]),
        [(0, t0), (1, t0 + 1), (2, t0 + 2)]
    );
    let marker = marker_key("", "s1", "A").unwrap();
    assert_eq!(s.put_log().iter().filter(|k| **k == marker).count(), 1);

    let again = manifest(&s, "s1", "A.2");
    assert_eq!(
        (again.order_id.as_str(), again.occurrence),
        ("A.2", Some(2))
    );
    assert_eq!(
        listed(&s, &again, &[t1, t1b]),
        [(0, t1), (1, t1 + 1), (2, t1b + 2), (3, t1b + 3)],
        "seq starts again at 0 and the brief return continues it"
    );
    let stored: Vec<String> = out
        .order_stored
        .iter()
        .map(|m| m.get::<String>("order-id").unwrap())
        .collect();
    assert_eq!(stored, ["A", "A.2", "B", "A.2"]);

    // A restart knows A only from the bucket.
    let t2 = t1 + 2 * HOUR_MS;
    let second = pipeline(&s.endpoint(), &[("pipeline-instance", "run-2".to_value())]);
    second.pipeline.set_state(gst::State::Playing).unwrap();
    push_at(&second, "A", t2, 0..1);
    push_at(&second, "A", t2 + 10_000, 1..2);
    second.src.end_of_stream().unwrap();
    let out = wait_end(&second, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(u64_prop(&second, "orders-reused"), 1);
    second.pipeline.set_state(gst::State::Null).unwrap();
    let third = manifest(&s, "s1", "A.3");
    assert_eq!(third.occurrence, Some(3));
    assert_eq!(
        listed(&s, &third, &[t2, t2 + 10_000]),
        [(0, t2), (1, t2 + 10_001)]
    );
    assert_eq!(
        manifest(&s, "s1", "A.2"),
        again,
        "A.2 untouched by the restart"
    );
    assert_eq!(manifest(&s, "s1", "A"), first);
    // Results and claims of occurrences are named the same way.
    assert_eq!(result_key("", "s1", "A.3").unwrap(), "results/s1/A.3.json");
}

#[test]
fn reuse_after_zero_keeps_every_return_in_the_first_order() {
    let s = server();
    let t0 = 1_700_000_000_000;
    let run = pipeline(&s.endpoint(), &[("reuse-after", 0u32.to_value())]);
    run.pipeline.set_state(gst::State::Playing).unwrap();
    push_at(&run, "A", t0, 0..1);
    push_at(&run, "A", t0 + 24 * HOUR_MS, 1..2);
    run.src.end_of_stream().unwrap();
    let out = wait_end(&run, Duration::from_secs(30), || {});
    assert!(out.error.is_none(), "{:?}", out.error);
    run.pipeline.set_state(gst::State::Null).unwrap();
    let a = manifest(&s, "s1", "A");
    assert_eq!(
        listed(&s, &a, &[t0, t0 + 24 * HOUR_MS]),
        [(0, t0), (1, t0 + 24 * HOUR_MS + 1)]
    );
    assert_eq!(u64_prop(&run, "orders-reused"), 0);
    assert!(
        !s.put_log().iter().any(|k| k.starts_with("s1/A.")),
        "{:?}",
        s.put_log()
    );
}
