//! `minioframesink`'s progress message, the liveness signal a supervisor reads: posted on
//! reaching PLAYING and at most once per `progress-interval` while buffers are rendered,
//! with the names and fields of `oa_contract::messages`.

use std::time::Duration;

use gst::prelude::*;
use gstorderaccuracy::meta::OrderTag;
use oa_contract::messages::{self, field};
use oa_test_support::s3::{BUCKET, ScratchS3};

fn init() {
    oa_test_support::s3::init_with_credentials(gstorderaccuracy::plugin_register_static);
}

/// An untagged (no order) frame of station `s1`.
fn frame(i: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![0xff, 0xd8, i as u8, 0xff, 0xd9]);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_seconds(i));
        OrderTag {
            station_id: "s1".into(),
            order_id: None,
            unix_ms: 1_000 + i,
        }
        .attach(b);
    }
    buffer
}

/// Pushes three frames, the last two 1.2 s after PLAYING, and returns the progress
/// messages posted until EOS.
fn run(progress_interval: u32) -> Vec<gst::Structure> {
    init();
    let server = ScratchS3::start("sink-progress");
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("image/jpeg").build())
        .format(gst::Format::Time)
        .build();
    let sink = gst::ElementFactory::make("minioframesink")
        .property("endpoint-uri", server.endpoint())
        .property("bucket", BUCKET)
        .property("progress-interval", progress_interval)
        .build()
        .unwrap();
    let pipeline = oa_test_support::play(&src, &sink);
    // A non-live pipeline reaches PLAYING once the first frame prerolled.
    src.push_buffer(frame(0)).unwrap();
    let (ok, state, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    assert!(
        ok.is_ok() && state == gst::State::Playing,
        "{ok:?} {state:?}"
    );
    std::thread::sleep(Duration::from_millis(1_200));
    src.push_buffer(frame(1)).unwrap();
    src.push_buffer(frame(2)).unwrap();
    src.end_of_stream().unwrap();

    let bus = pipeline.bus().unwrap();
    let mut progress = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(10))
            .expect("EOS within 10 s");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == messages::SINK_PROGRESS)
                {
                    progress.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    drop(server);
    progress
}

fn count(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("{name} of {s}: {e}"))
}

#[test]
fn progress_on_playing_then_once_per_interval_then_at_the_end() {
    let progress = run(1);
    assert_eq!(progress.len(), 3, "{progress:#?}");
    // On reaching PLAYING: before any frame was rendered or its station known.
    let playing = &progress[0];
    assert_eq!(count(playing, field::FRAMES_RECEIVED), 0, "{playing}");
    assert!(!playing.has_field(field::STATION_ID), "{playing}");
    // The second frame, more than an interval later; the third is within it.
    let rendered = &progress[1];
    assert_eq!(
        rendered.get::<&str>(field::STATION_ID).unwrap(),
        "s1",
        "{rendered}"
    );
    assert_eq!(count(rendered, field::FRAMES_RECEIVED), 2, "{rendered}");
    // Untagged frames beyond the pre-roll of 1 are dropped, none stored.
    assert_eq!(count(rendered, field::FRAMES_DROPPED), 1, "{rendered}");
    assert_eq!(count(rendered, field::FRAMES_STORED), 0, "{rendered}");
    assert_eq!(count(rendered, field::MARKERS_WRITTEN), 0, "{rendered}");
    // At EOS, the final counts: every frame, although within the interval.
    let ended = &progress[2];
    assert_eq!(count(ended, field::FRAMES_RECEIVED), 3, "{ended}");
    // The pre-roll frame no order took is dropped at the end too.
    assert_eq!(count(ended, field::FRAMES_DROPPED), 3, "{ended}");
}

#[test]
fn progress_interval_zero_posts_none() {
    let progress = run(0);
    assert!(progress.is_empty(), "{progress:#?}");
}
