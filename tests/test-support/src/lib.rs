//! Frames for tests and benchmarks, rendered by real GStreamer elements (`videotestsrc`,
//! `textoverlay`, `jpegenc`...) and taken from an `appsink`; an `appsrc` feeding an element
//! under test; and ([`s3`]) a real S3 server with the credentials its clients read.

use gst::prelude::*;

pub mod s3;

/// How long one frame may take to come out.
const FRAME_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Runs `description` (a gst-launch line ending in `appsink name=sink`) and returns every
/// sample its sink receives until end of stream. Panics with the description on any
/// failure: these are test fixtures.
pub fn samples(description: &str) -> Vec<gst::Sample> {
    gst::init().expect("GStreamer initialises");
    let pipeline = gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline description");
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .unwrap_or_else(|| panic!("{description}: no `appsink name=sink`"));
    pipeline
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| panic!("{description}: {e}"));
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(FRAME_TIMEOUT) {
        out.push(sample);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        sink.is_eos(),
        "{description}: no frame for {FRAME_TIMEOUT} before end of stream"
    );
    out
}

/// The single frame of `description` (which should produce one, e.g. `num-buffers=1`),
/// as caps and buffer.
pub fn frame(description: &str) -> (gst::Caps, gst::Buffer) {
    let sample = samples(description)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{description}: no frame"));
    (
        sample.caps().expect("caps").to_owned(),
        sample.buffer().expect("buffer").to_owned(),
    )
}

/// The bytes of every buffer of `description`, e.g. encoded JPEGs.
pub fn buffers(description: &str) -> Vec<Vec<u8>> {
    samples(description)
        .iter()
        .map(|s| {
            s.buffer()
                .expect("buffer")
                .map_readable()
                .expect("readable buffer")
                .to_vec()
        })
        .collect()
}

/// Plays `src ! sink` in a new pipeline, e.g. frames pushed into an element under test.
pub fn play(src: &gst_app::AppSrc, sink: &gst::Element) -> gst::Pipeline {
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src.upcast_ref(), sink]).unwrap();
    src.link(sink).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// Waits for `pipeline`'s EOS for up to `limit`; panics on an error message or when the
/// time is up.
pub fn wait_eos(pipeline: &gst::Pipeline, limit: std::time::Duration) {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = bus
            .timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
            .unwrap_or_else(|| panic!("no EOS within {limit:?}"));
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_with_their_caps() {
        let (caps, buf) = frame(
            "videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=64,height=48 \
             ! appsink name=sink sync=false",
        );
        let s = caps.structure(0).unwrap();
        assert_eq!(s.get::<i32>("width").unwrap(), 64);
        assert_eq!(buf.size(), 64 * 48);
        let jpegs = buffers(
            "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! jpegenc \
             ! appsink name=sink sync=false",
        );
        assert_eq!(jpegs.len(), 3);
        assert!(jpegs.iter().all(|j| j.starts_with(&[0xFF, 0xD8])));
    }

    #[test]
    #[should_panic(expected = "no `appsink name=sink`")]
    fn a_description_without_the_sink_is_refused() {
        samples("videotestsrc num-buffers=1 ! fakesink");
    }
}
