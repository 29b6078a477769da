//! A pipeline stopped (killed) in the middle of an order leaves its frames in S3 with no
//! `__EOS__` marker; the `minioframesink` of the restarted pipeline resumes the order: `seq`
//! continues after the stored frames and the marker lists them first; so are frames stored
//! after a marker that exists (the orchestrator's `recovered` one). Against a real S3
//! endpoint (s3s-fs with SigV4) on 127.0.0.1.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstorderaccuracy::events::OrderComplete;
use gstorderaccuracy::meta::OrderTag;
use oa_contract::{CompletionReason, FrameEntry, Manifest, frame_key, marker_key};
use oa_test_support::s3::{BUCKET, ScratchS3};

fn server() -> ScratchS3 {
    oa_test_support::s3::init_with_credentials(gstorderaccuracy::plugin_register_static);
    ScratchS3::start("restart-mid-order")
}

/// The bytes of frame `i`: distinct per frame, of a size of its own.
fn jpeg(i: u32) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    v.extend(format!("frame {i}").bytes());
    v.extend(std::iter::repeat_n((i % 251) as u8, 16 + i as usize));
    v.extend([0xff, 0xd9]);
    v
}

/// Frame `i` of `order` of station `s1`, taken at `unix_ms` 10_000 + i.
fn frame(i: u32, order: &str) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(jpeg(i));
    let b = buffer.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_seconds(i.into()));
    OrderTag {
        station_id: "s1".into(),
        order_id: Some(order.into()),
        unix_ms: 10_000 + u64::from(i),
    }
    .attach(b);
    buffer
}

fn complete(order: &str, frame_count: u32) -> gst::Event {
    gst::Event::from(&OrderComplete::new(
        "s1",
        order,
        CompletionReason::NextOrder,
        frame_count,
    ))
}

struct Run {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst::Element,
}

fn pipeline(endpoint: &str, instance: &str) -> Run {
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("image/jpeg").build())
        .format(gst::Format::Time)
        .build();
    let sink = gst::ElementFactory::make("minioframesink")
        .property("endpoint-uri", endpoint)
        .property("bucket", BUCKET)
        .property("request-timeout", 2_000u32)
        .property("pipeline-instance", instance)
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    Run {
        pipeline,
        src,
        sink,
    }
}

/// Pushes frames `range` of `order`, then its OrderComplete.
fn push_order(run: &Run, order: &str, range: std::ops::Range<u32>) {
    let n = range.len() as u32;
    for i in range {
        run.src.push_buffer(frame(i, order)).unwrap();
    }
    assert!(run.src.send_event(complete(order, n)));
}

/// A new pipeline `instance` that sees frames `range` of `order`, its OrderComplete and EOS.
fn run_order(s: &ScratchS3, instance: &str, order: &str, range: std::ops::Range<u32>) -> Run {
    let run = pipeline(&s.endpoint(), instance);
    push_order(&run, order, range);
    finish(&run);
    run
}

/// Ends the stream and waits for EOS, failing on any error.
fn finish(run: &Run) {
    run.src.end_of_stream().unwrap();
    oa_test_support::wait_eos(&run.pipeline, Duration::from_secs(30));
}

fn counter(run: &Run, name: &str) -> u64 {
    run.sink.property::<u64>(name)
}

fn manifest(s: &ScratchS3, order: &str) -> Manifest {
    let key = marker_key("", "s1", order).unwrap();
    let body = s
        .read_object(BUCKET, &key)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    Manifest::from_json(&body).unwrap()
}

/// `(seq, frame index)` of every frame `m` lists, in manifest order; checks that each is
/// stored under its contract key with the bytes (and size) of its frame.
fn listed(s: &ScratchS3, m: &Manifest) -> Vec<(u32, u32)> {
    m.frames
        .iter()
        .map(|f| {
            let i = (f.unix_ms - 10_000) as u32;
            assert_eq!(
                f.key,
                frame_key("", "s1", &m.order_id, f.unix_ms, f.seq).unwrap()
            );
            let body = s.read_object(BUCKET, &f.key).unwrap();
            assert_eq!(body, jpeg(i), "{}", f.key);
            assert_eq!(f.bytes, body.len() as u64, "{}", f.key);
            (f.seq, i)
        })
        .collect()
}

/// Stores `body` under `key` as the server keeps objects (a file under its bucket folder),
/// as if a pipeline had PUT it before it was killed.
fn pre_store(s: &ScratchS3, key: &str, body: &[u8]) {
    let path = s.object_path(BUCKET, key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// Stores frame `i` of `order` under its contract key (see [`pre_store`]) and returns its
/// entry, as a marker lists it.
fn pre_store_frame(s: &ScratchS3, order: &str, i: u32) -> FrameEntry {
    let unix_ms = 10_000 + u64::from(i);
    let key = frame_key("", "s1", order, unix_ms, i).unwrap();
    let body = jpeg(i);
    pre_store(s, &key, &body);
    FrameEntry {
        key,
        seq: i,
        unix_ms,
        bytes: body.len() as u64,
    }
}

/// The PUTs of frames and markers, station index entries left out.
fn objects_put(s: &ScratchS3) -> Vec<String> {
    s.put_log()
        .into_iter()
        .filter(|k| !k.contains("/__index__/"))
        .collect()
}

fn assert_each_key_put_once(s: &ScratchS3) {
    let puts = s.put_log();
    let unique: HashSet<&String> = puts.iter().collect();
    assert_eq!(unique.len(), puts.len(), "a key was overwritten: {puts:#?}");
}

#[test]
fn a_pipeline_stopped_mid_order_is_resumed_by_the_next_one() {
    let s = server();
    // The first pipeline stores 3 frames of A and goes away before A completes: no
    // OrderComplete, no EOS, so no marker (as after a SIGKILL).
    let first = pipeline(&s.endpoint(), "run-1");
    for i in 0..3 {
        first.src.push_buffer(frame(i, "A")).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter(&first, "frames-uploaded") < 3 {
        assert!(Instant::now() < deadline, "3 frames stored within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.pipeline.set_state(gst::State::Null).unwrap();
    drop(first);
    let marker = marker_key("", "s1", "A").unwrap();
    assert!(s.read_object(BUCKET, &marker).is_err(), "no marker yet");
    let mut before = objects_put(&s);
    before.sort();
    assert_eq!(before.len(), 3);

    // The restarted pipeline sees the same slip, then the next order.
    let second = pipeline(&s.endpoint(), "run-2");
    push_order(&second, "A", 3..5);
    push_order(&second, "C", 5..6);
    finish(&second);

    let a = manifest(&s, "A");
    assert_eq!(
        listed(&s, &a),
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)],
        "earlier frames first, seq continuing after them"
    );
    let keys: Vec<&str> = a.frames[..3].iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, before, "the frames of the stopped pipeline");
    assert_eq!(a.frame_count, 5);
    assert_eq!(
        (a.first_unix_ms, a.last_unix_ms),
        (Some(10_000), Some(10_004))
    );
    assert_eq!(a.pipeline_instance, "run-2");
    // C has nothing stored before: the listing is empty and its seq starts at 0.
    let c = manifest(&s, "C");
    assert_eq!(listed(&s, &c), [(0, 5)]);

    assert_eq!(counter(&second, "orders-resumed"), 1);
    assert_eq!(counter(&second, "orders-repeated"), 0);
    assert_eq!(counter(&second, "frames-uploaded"), 3);
    assert_each_key_put_once(&s);
    second.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn frames_stored_without_a_marker_are_listed_across_pages() {
    let s = server();
    // More than one LIST page (1000 keys) of A, stored out of order, beside objects that
    // are not frames of A.
    const STORED: u32 = 1_003;
    for i in (0..STORED).rev() {
        pre_store_frame(&s, "A", i);
    }
    pre_store(&s, "s1/A/notes.txt", b"not a frame");
    pre_store(&s, &frame_key("", "s1", "A2", 10_000, 0).unwrap(), &jpeg(0));

    let run = run_order(&s, "run-2", "A", STORED..STORED + 2);

    let a = manifest(&s, "A");
    let expected: Vec<(u32, u32)> = (0..STORED + 2).map(|i| (i, i)).collect();
    assert_eq!(listed(&s, &a), expected);
    assert_eq!(counter(&run, "orders-resumed"), 1);
    assert_eq!(counter(&run, "frames-uploaded"), 2);
    assert_each_key_put_once(&s);
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn an_order_with_only_foreign_objects_under_its_prefix_starts_at_seq_0() {
    let s = server();
    pre_store(&s, "s1/B/notes.txt", b"not a frame");
    pre_store(&s, "s1/B/frame_1_2.jpg", b"not a contract frame name");
    pre_store(&s, &frame_key("", "s1", "B2", 10_000, 7).unwrap(), &jpeg(0));

    let run = run_order(&s, "run-1", "B", 0..2);

    let b = manifest(&s, "B");
    assert_eq!(listed(&s, &b), [(0, 0), (1, 1)]);
    assert_eq!(counter(&run, "orders-resumed"), 0);
    assert_eq!(counter(&run, "orders-repeated"), 0);
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn frames_stored_after_an_existing_marker_are_kept_with_it() {
    let s = server();
    // The orchestrator wrote a `recovered` marker for A listing frames 0..=2 (its pipeline
    // had died); the next pipeline continued A with 3 and 4 and was killed before writing
    // a marker of its own.
    let marked: Vec<FrameEntry> = (0..3).map(|i| pre_store_frame(&s, "A", i)).collect();
    let old = Manifest::new(
        "s1",
        "A",
        CompletionReason::Recovered,
        marked,
        "orchestrator",
    );
    let marker = marker_key("", "s1", "A").unwrap();
    pre_store(&s, &marker, &old.to_json());
    for i in 3..5 {
        pre_store_frame(&s, "A", i);
    }

    let run = run_order(&s, "run-3", "A", 5..7);

    let a = manifest(&s, "A");
    assert_eq!(
        listed(&s, &a),
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)],
        "the marker's frames, those stored after it, then the new ones from seq 5"
    );
    assert_eq!(a.frame_count, 7);
    assert_eq!(
        (a.first_unix_ms, a.last_unix_ms),
        (Some(10_000), Some(10_006))
    );
    assert_eq!(a.pipeline_instance, "run-3");
    assert_eq!(counter(&run, "orders-repeated"), 1);
    assert_eq!(counter(&run, "orders-resumed"), 0);
    assert_eq!(counter(&run, "frames-uploaded"), 2);
    let mut puts = objects_put(&s);
    puts.sort();
    let mut expected = vec![a.frames[5].key.clone(), a.frames[6].key.clone(), marker];
    expected.sort();
    assert_eq!(
        puts, expected,
        "only the new frames and the new marker are PUT"
    );
    run.pipeline.set_state(gst::State::Null).unwrap();
}
