//! Frames held for an order (a hand over the slip, the first frames before an ID is
//! confirmed) through `eosmarker ! minioframesink` against a real S3 endpoint on 127.0.0.1:
//! they join their order in capture order, or are dropped and counted, never stored twice
//! or under another order; and they keep the order from idling in `eosmarker`.

use std::time::Duration;

use gst::prelude::*;
use gstorderaccuracy::meta::{OrderTag, set_held_for};
use oa_contract::{Manifest, marker_key};
use oa_test_support::s3::{BUCKET, ScratchS3};

fn server() -> ScratchS3 {
    oa_test_support::s3::init_with_credentials(gstorderaccuracy::plugin_register_static);
    ScratchS3::start("held-frames")
}

/// What one frame is: tagged with an order, held for one, or neither.
#[derive(Clone, Copy)]
enum Kind {
    Of(&'static str),
    HeldFor(&'static str),
    Nothing,
}

fn frame(i: u32, kind: Kind) -> gst::Buffer {
    let mut body = vec![0xff, 0xd8];
    body.extend(format!("frame {i}").bytes());
    body.extend([0xff, 0xd9]);
    let mut buffer = gst::Buffer::from_mut_slice(body);
    let b = buffer.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_seconds(i.into()));
    let (order, held) = match kind {
        Kind::Of(o) => (Some(o), None),
        Kind::HeldFor(o) => (None, Some(o)),
        Kind::Nothing => (None, None),
    };
    OrderTag {
        station_id: "s1".into(),
        order_id: order.map(Into::into),
        unix_ms: 1_000 + u64::from(i),
    }
    .attach(b);
    set_held_for(b, held);
    buffer
}

struct Run {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    marker: gst::Element,
    sink: gst::Element,
}

fn pipeline(endpoint: &str) -> Run {
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("image/jpeg").build())
        .format(gst::Format::Time)
        .build();
    // Shorter than the 4 s occlusion below: only the held frames keep the order open.
    let marker = gst::ElementFactory::make("eosmarker")
        .property("idle-timeout", 3_000u32)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("minioframesink")
        .property("endpoint-uri", endpoint)
        .property("bucket", BUCKET)
        .property("request-timeout", 2_000u32)
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([src.upcast_ref(), &marker, &sink])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &marker, &sink]).unwrap();
    Run {
        pipeline,
        src,
        marker,
        sink,
    }
}

fn play(run: &Run, frames: &[Kind]) {
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for (i, kind) in frames.iter().enumerate() {
        run.src.push_buffer(frame(i as u32, *kind)).unwrap();
    }
    run.src.end_of_stream().unwrap();
    oa_test_support::wait_eos(&run.pipeline, Duration::from_secs(30));
}

/// `(seq, frame index)` of every frame the order's manifest lists.
fn stored(s: &ScratchS3, order: &str) -> Vec<(u32, u64)> {
    let key = marker_key("", "s1", order).unwrap();
    let body = s.read_object(BUCKET, &key).unwrap();
    let m = Manifest::from_json(&body).unwrap();
    m.frames
        .iter()
        .map(|f| (f.seq, f.unix_ms - 1_000))
        .collect()
}

fn indices(v: &[(u32, u64)]) -> Vec<u64> {
    assert!(
        v.iter().enumerate().all(|(i, (seq, _))| *seq == i as u32),
        "seq in capture order: {v:?}"
    );
    v.iter().map(|(_, i)| *i).collect()
}

#[test]
fn occluded_and_unconfirmed_frames_join_their_order() {
    use Kind::*;
    let s = server();
    let run = pipeline(&s.endpoint());
    play(
        &run,
        &[
            Nothing,      // 0: the table just before A's slip: pre-roll
            Of("A"),      // 1
            Of("A"),      // 2
            HeldFor("A"), // 3..=6: a hand over A's slip for 4 s, longer than idle-timeout
            HeldFor("A"),
            HeldFor("A"),
            HeldFor("A"),
            Of("A"),      // 7: read again
            Of("A"),      // 8
            HeldFor("A"), // 9: A's slip covered as B's is put down: not B's
            HeldFor("B"), // 10: B read, not yet confirmed
            Of("B"),      // 11
            Of("B"),      // 12
            HeldFor("B"), // 13: held, but the window passes (14)
            Nothing,      // 14
            Nothing,      // 15: the table before C: pre-roll
            Of("C"),      // 16
        ],
    );
    assert_eq!(indices(&stored(&s, "A")), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(indices(&stored(&s, "B")), [10, 11, 12]);
    assert_eq!(indices(&stored(&s, "C")), [15, 16]);
    // 9 (another order came), 13 (window passed) and 14 (beyond the pre-roll).
    assert_eq!(run.sink.property::<u64>("frames-dropped-untagged"), 3);
    assert_eq!(run.sink.property::<u64>("frames-uploaded"), 14);
    assert_eq!(run.sink.property::<u64>("markers-written"), 3);
    assert_eq!(
        run.marker.property::<u64>("orders-completed"),
        3,
        "A was not split by its occlusion"
    );
    let (index, puts): (Vec<String>, Vec<String>) = s
        .put_log()
        .into_iter()
        .partition(|k| k.contains("/__index__/"));
    assert_eq!(puts.len(), 17, "each frame stored once: {puts:#?}");
    // A begin and a marker entry per order in the station index.
    assert_eq!(index.len(), 6, "{index:#?}");
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn frames_held_for_a_completed_order_are_dropped() {
    use Kind::*;
    let s = server();
    let run = pipeline(&s.endpoint());
    play(&run, &[Of("A"), Of("A"), HeldFor("A"), HeldFor("A")]);
    assert_eq!(indices(&stored(&s, "A")), [0, 1]);
    assert_eq!(run.sink.property::<u64>("frames-dropped-untagged"), 2);
    run.pipeline.set_state(gst::State::Null).unwrap();
}
