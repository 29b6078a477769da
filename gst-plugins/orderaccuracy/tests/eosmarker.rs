//! `eosmarker` through `gst_check::Harness`: completion reasons, event order relative to
//! frames, the idle timer firing with no buffers flowing, and exactly-once completion.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstorderaccuracy::events::{OrderChanged, OrderComplete};
use gstorderaccuracy::meta::OrderTag;
use oa_contract::CompletionReason;

fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstorderaccuracy::plugin_register_static().unwrap();
    });
}

fn harness(idle_timeout_ms: u32) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new("eosmarker");
    h.element()
        .unwrap()
        .set_property("idle-timeout", idle_timeout_ms);
    h.set_src_caps_str("image/jpeg");
    h
}

/// Frame number `index` of a stream at 10 frames/s.
fn frame(order: Option<&str>, index: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size(16).unwrap();
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(100 * index));
        OrderTag {
            station_id: "s1".into(),
            order_id: order.map(str::to_owned),
            unix_ms: 1_000 * (index + 1),
        }
        .attach(b);
    }
    buffer
}

/// What left the element, in order.
#[derive(Debug, PartialEq)]
enum Out {
    Frame(Option<String>),
    Complete(String, CompletionReason, u32),
    Changed(Option<String>),
    Eos,
}

/// Pulls everything the element has pushed so far (events and buffers interleaved as
/// they were pushed: the harness keeps them in separate queues, so pull in lockstep with
/// what was sent).
fn drain(h: &mut gst_check::Harness) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let Some(c) = OrderComplete::try_parse(&ev) {
            out.push(Out::Complete(c.order_id, c.reason, c.frame_count));
        } else if let Some(c) = OrderChanged::try_parse(&ev) {
            out.push(Out::Changed(c.order_id));
        } else if ev.type_() == gst::EventType::Eos {
            out.push(Out::Eos);
        }
    }
    while let Some(b) = h.try_pull() {
        out.push(Out::Frame(
            OrderTag::from_buffer(&b).and_then(|t| t.order_id),
        ));
    }
    out
}

fn completions(out: &[Out]) -> Vec<&Out> {
    out.iter()
        .filter(|o| matches!(o, Out::Complete(..)))
        .collect()
}

#[test]
fn next_order_completes_before_the_first_frame_of_the_next() {
    let mut h = harness(60_000);
    for s in 0..3 {
        h.push(frame(Some("384"), s)).unwrap();
    }
    assert!(completions(&drain(&mut h)).is_empty());
    h.push(frame(None, 3)).unwrap();
    h.push(frame(Some("651"), 4)).unwrap();
    // The completion event must have been pushed before the 651 frame: with it queued
    // and the 651 frame also delivered, the event queue holds exactly one completion.
    let out = drain(&mut h);
    assert_eq!(
        completions(&out),
        vec![&Out::Complete("384".into(), CompletionReason::NextOrder, 3)]
    );
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Out::Frame(_)))
            .collect::<Vec<_>>(),
        vec![&Out::Frame(None), &Out::Frame(Some("651".into()))]
    );
    assert_eq!(
        h.element()
            .unwrap()
            .property::<Option<String>>("current-order"),
        Some("651".into())
    );
}

#[test]
fn completion_is_serialized_ahead_of_next_order_frames() {
    // Check the order on the wire with a probe on the harness's sink pad.
    init();
    let mut h = harness(60_000);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = h.sinkpad().unwrap().clone();
    let seen2 = seen.clone();
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let entry = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => format!(
                    "frame:{}",
                    OrderTag::from_buffer(b)
                        .and_then(|t| t.order_id)
                        .unwrap_or_default()
                ),
                Some(gst::PadProbeData::Event(e)) => match OrderComplete::try_parse(e) {
                    Some(c) => format!("complete:{}", c.order_id),
                    None => return gst::PadProbeReturn::Ok,
                },
                _ => return gst::PadProbeReturn::Ok,
            };
            seen2.lock().unwrap().push(entry);
            gst::PadProbeReturn::Ok
        },
    );
    h.push(frame(Some("384"), 0)).unwrap();
    h.push(frame(Some("384"), 1)).unwrap();
    h.push(frame(Some("651"), 2)).unwrap();
    h.push_event(gst::event::Eos::new());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "frame:384",
            "frame:384",
            "complete:384",
            "frame:651",
            "complete:651"
        ]
    );
}

#[test]
fn order_changed_event_completes_without_waiting_for_a_frame() {
    let mut h = harness(60_000);
    h.push(frame(Some("384"), 0)).unwrap();
    let changed = OrderChanged {
        station_id: "s1".into(),
        order_id: Some("651".into()),
        previous: Some("384".into()),
        confidence: 0.9,
    };
    assert!(h.push_event(gst::Event::from(&changed)));
    let out = drain(&mut h);
    assert_eq!(
        out[..2],
        [
            Out::Complete("384".into(), CompletionReason::NextOrder, 1),
            Out::Changed(Some("651".into())),
        ]
    );
    // A release (no slip read) does not complete anything: only the idle timer does.
    h.push(frame(Some("651"), 1)).unwrap();
    let released = OrderChanged {
        station_id: "s1".into(),
        order_id: None,
        previous: Some("651".into()),
        confidence: 0.0,
    };
    assert!(h.push_event(gst::Event::from(&released)));
    assert!(completions(&drain(&mut h)).is_empty());
}

#[test]
fn idle_timeout_fires_with_no_buffers_flowing() {
    let mut h = harness(300);
    h.push(frame(Some("384"), 0)).unwrap();
    h.push(frame(Some("384"), 1)).unwrap();
    h.push(frame(None, 2)).unwrap();
    let started = Instant::now();
    // No more buffers: only the element's own timer can produce this event.
    let complete = loop {
        let ev = h
            .pull_event()
            .expect("the idle timer should send a completion");
        if let Some(c) = OrderComplete::try_parse(&ev) {
            break c;
        }
    };
    assert_eq!(complete.order_id, "384");
    assert_eq!(complete.reason, CompletionReason::IdleTimeout);
    assert_eq!(complete.frame_count, 2);
    assert_eq!(complete.first_unix_ms, Some(1_000));
    assert_eq!(complete.last_unix_ms, Some(2_000));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        h.element()
            .unwrap()
            .property::<Option<String>>("current-order"),
        None
    );

    // Exactly once: EOS afterwards completes nothing more.
    h.push_event(gst::event::Eos::new());
    assert!(completions(&drain(&mut h)).is_empty());
    assert_eq!(h.element().unwrap().property::<u64>("orders-completed"), 1);
}

#[test]
fn frames_keep_an_order_open_past_the_timeout_length() {
    let mut h = harness(400);
    for s in 0..6 {
        h.push(frame(Some("384"), s)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    // 900 ms of wall-clock time, each frame within 400 ms of the previous: still open.
    assert!(completions(&drain(&mut h)).is_empty());
    assert_ends_at_eos(&mut h, "384", 6);
}

#[test]
fn eos_completes_the_open_order_before_eos() {
    let mut h = harness(60_000);
    for s in 0..4 {
        h.push(frame(Some("925"), s)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = drain(&mut h);
    assert_eq!(
        out[..2],
        [
            Out::Complete("925".into(), CompletionReason::EndOfStream, 4),
            Out::Eos
        ]
    );
}

#[test]
fn untagged_frames_never_open_an_order() {
    let mut h = harness(100);
    let mut plain = gst::Buffer::with_size(8).unwrap();
    plain.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    h.push(plain).unwrap();
    h.push(frame(None, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    h.push_event(gst::event::Eos::new());
    let out = drain(&mut h);
    assert!(completions(&out).is_empty(), "{out:?}");
    assert_eq!(h.element().unwrap().property::<u64>("orders-completed"), 0);
}

#[test]
fn idle_timeout_zero_disables_the_timer() {
    let mut h = harness(0);
    h.push(frame(Some("1"), 0)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(completions(&drain(&mut h)).is_empty());
    h.push_event(gst::event::Eos::new());
    assert_eq!(
        completions(&drain(&mut h)),
        vec![&Out::Complete("1".into(), CompletionReason::EndOfStream, 1)]
    );
}

#[test]
fn a_timestamp_gap_longer_than_the_timeout_ends_the_order() {
    // A file decoded faster than real time: the wall clock never sees 10 s pass.
    let mut h = harness(10_000);
    h.push(frame(Some("384"), 0)).unwrap();
    h.push(frame(Some("384"), 1)).unwrap();
    h.push(frame(None, 50)).unwrap();
    assert!(completions(&drain(&mut h)).is_empty());
    // 10.9 s after the last frame of the order.
    h.push(frame(None, 110)).unwrap();
    assert_eq!(
        completions(&drain(&mut h)),
        vec![&Out::Complete(
            "384".into(),
            CompletionReason::IdleTimeout,
            2
        )]
    );
}

/// Records the frames and completions that leave the element, in the order it pushed them.
fn record(h: &gst_check::Harness) -> std::sync::Arc<std::sync::Mutex<Vec<Out>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    h.sinkpad().unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let entry = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    Out::Frame(OrderTag::from_buffer(b).and_then(|t| t.order_id))
                }
                Some(gst::PadProbeData::Event(e)) => match OrderComplete::try_parse(e) {
                    Some(c) => Out::Complete(c.order_id, c.reason, c.frame_count),
                    None => return gst::PadProbeReturn::Ok,
                },
                _ => return gst::PadProbeReturn::Ok,
            };
            seen2.lock().unwrap().push(entry);
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// `n` frames of `order`, as recorded by [`record`].
fn frames_of(order: &str, n: usize) -> Vec<Out> {
    (0..n).map(|_| Out::Frame(Some(order.into()))).collect()
}

#[test]
fn max_order_duration_cuts_an_order_into_segments_of_the_same_order() {
    let mut h = harness(60_000);
    let element = h.element().unwrap();
    element.set_property("max-order-duration", 3_000u32);
    assert_eq!(element.property::<u32>("max-order-duration"), 3_000);
    let wire = record(&h);
    // 7 s of one order at 10 frames/s, pushed faster than real time.
    for i in 0..70 {
        h.push(frame(Some("384"), i)).unwrap();
    }
    assert_eq!(
        element.property::<Option<String>>("current-order"),
        Some("384".into()),
        "the order goes on after its segments"
    );
    h.push_event(gst::event::Eos::new());
    // Frames 0..=29 (0 to 2.9 s) are the first segment; the frame at 3.0 s opens the
    // next segment of the same order, after the completion of the first.
    let mut expected = frames_of("384", 30);
    expected.push(Out::Complete(
        "384".into(),
        CompletionReason::MaxDuration,
        30,
    ));
    expected.extend(frames_of("384", 30));
    expected.push(Out::Complete(
        "384".into(),
        CompletionReason::MaxDuration,
        30,
    ));
    expected.extend(frames_of("384", 10));
    expected.push(Out::Complete(
        "384".into(),
        CompletionReason::EndOfStream,
        10,
    ));
    assert_eq!(*wire.lock().unwrap(), expected);
    assert_eq!(element.property::<u64>("orders-completed"), 3);
}

#[test]
fn the_default_max_order_duration_is_ten_minutes() {
    let mut h = harness(60_000);
    let element = h.element().unwrap();
    assert_eq!(element.property::<u32>("max-order-duration"), 600_000);
    // One frame every 10 s for 700 s.
    for k in 0..=70 {
        h.push(frame(Some("384"), 100 * k)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_eq!(
        completions(&drain(&mut h)),
        vec![
            &Out::Complete("384".into(), CompletionReason::MaxDuration, 60),
            &Out::Complete("384".into(), CompletionReason::EndOfStream, 11),
        ]
    );
}

#[test]
fn max_order_duration_zero_never_cuts_an_order() {
    let mut h = harness(60_000);
    let element = h.element().unwrap();
    element.set_property("max-order-duration", 0u32);
    assert_eq!(element.property::<u32>("max-order-duration"), 0);
    // One frame every 10 s for 700 s, longer than the default limit.
    for k in 0..=70 {
        h.push(frame(Some("384"), 100 * k)).unwrap();
    }
    assert!(completions(&drain(&mut h)).is_empty());
    assert_ends_at_eos(&mut h, "384", 71);
}

/// Sends EOS and checks that its only completion is `order`'s, with `frames` frames.
fn assert_ends_at_eos(h: &mut gst_check::Harness, order: &str, frames: u32) {
    h.push_event(gst::event::Eos::new());
    assert_eq!(
        completions(&drain(h)),
        vec![&Out::Complete(
            order.into(),
            CompletionReason::EndOfStream,
            frames
        )]
    );
}
