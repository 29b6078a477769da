//! The order lifecycle of `eosmarker`, apart from pads, locks and the timer thread: which
//! order is open, and when it is complete (the next order, an idle timeout measured on
//! the wall clock or on the frames' timestamps, the maximum duration of a segment measured
//! on the frames' timestamps, or end of stream).

use std::time::{Duration, Instant};

use oa_contract::CompletionReason;

use crate::events::OrderComplete;

/// The order whose frames are passing now: the segment of it since it was opened, or since
/// its previous segment reached the maximum duration.
#[derive(Debug)]
struct OpenOrder {
    station_id: String,
    order_id: String,
    frame_count: u32,
    first_pts: Option<gst::ClockTime>,
    last_pts: Option<gst::ClockTime>,
    first_unix_ms: Option<u64>,
    last_unix_ms: Option<u64>,
    /// The latest timestamp of a frame of the order, for the idle timeout.
    seen_pts: Option<gst::ClockTime>,
    last_frame_at: Instant,
    /// The latest frame held for the order (a hand over its slip).
    held_pts: Option<gst::ClockTime>,
    held_at: Option<Instant>,
}

/// While frames are held for the open order, its ID may come back: the idle timeout
/// waits until none was held for this long. The idle timeout itself still counts from the
/// order's last frame, so a slip that leaves completes its order as before, not later by
/// the hold window.
pub const HOLD_SETTLE: Duration = Duration::from_secs(2);

impl OpenOrder {
    fn new(station_id: String, order_id: String, now: Instant) -> Self {
        OpenOrder {
            station_id,
            order_id,
            frame_count: 0,
            first_pts: None,
            last_pts: None,
            first_unix_ms: None,
            last_unix_ms: None,
            seen_pts: None,
            last_frame_at: now,
            held_pts: None,
            held_at: None,
        }
    }

    /// Whether a frame was held for the order within [`HOLD_SETTLE`] of `pts`.
    fn held_recently_pts(&self, pts: gst::ClockTime) -> bool {
        let settle = gst::ClockTime::try_from(HOLD_SETTLE).unwrap_or(gst::ClockTime::ZERO);
        self.held_pts
            .is_some_and(|h| pts.saturating_sub(h) < settle)
    }

    /// When the idle timeout may complete the order, on the wall clock.
    fn idle_at(&self, timeout: Duration) -> Instant {
        let idle = self.last_frame_at + timeout;
        match self.held_at {
            Some(h) => idle.max(h + HOLD_SETTLE),
            None => idle,
        }
    }

    /// Whether a frame at `pts` comes `max` or more after the segment's first frame, on the
    /// frames' timestamps (a frame without one never does).
    fn outlasted_by(&self, pts: Option<gst::ClockTime>, max: Option<Duration>) -> bool {
        let max = max.and_then(|m| gst::ClockTime::try_from(m).ok());
        match (pts, self.first_pts, max) {
            (Some(pts), Some(first), Some(max)) => pts.saturating_sub(first) >= max,
            _ => false,
        }
    }

    fn add_frame(&mut self, pts: Option<gst::ClockTime>, unix_ms: u64, now: Instant) {
        self.frame_count += 1;
        self.first_pts = self.first_pts.or(pts);
        self.last_pts = pts.or(self.last_pts);
        self.seen_pts = pts.or(self.seen_pts);
        if unix_ms > 0 {
            self.first_unix_ms = self.first_unix_ms.or(Some(unix_ms));
            self.last_unix_ms = Some(unix_ms);
        }
        self.last_frame_at = now;
    }

    fn complete(self, reason: CompletionReason) -> OrderComplete {
        OrderComplete {
            station_id: self.station_id,
            order_id: self.order_id,
            reason,
            frame_count: self.frame_count,
            first_pts: self.first_pts,
            last_pts: self.last_pts,
            first_unix_ms: self.first_unix_ms,
            last_unix_ms: self.last_unix_ms,
        }
    }
}

/// What a tagged frame did.
#[derive(Debug, PartialEq)]
pub struct Admitted {
    /// The open order it ended: being of another order (`next-order`), or being of the
    /// same order past the maximum duration of its segment (`max-duration`).
    pub finished: Option<OrderComplete>,
    /// Whether it opened its order, or the next segment of it.
    pub opened: bool,
}

#[derive(Debug, Default)]
pub struct Lifecycle {
    open: Option<OpenOrder>,
}

impl Lifecycle {
    /// The open order's ID and frame count.
    pub fn open_order(&self) -> Option<(&str, u32)> {
        self.open
            .as_ref()
            .map(|o| (o.order_id.as_str(), o.frame_count))
    }

    /// Completes the open order when the frame at `pts` comes `timeout` or more after its
    /// last frame: a recorded file runs faster than real time, so a gap in timestamps ends
    /// an order as surely as the wall-clock timer does for a live source.
    pub fn take_stale(
        &mut self,
        pts: Option<gst::ClockTime>,
        timeout: Option<Duration>,
    ) -> Option<OrderComplete> {
        let timeout = gst::ClockTime::try_from(timeout?).ok()?;
        let pts = pts?;
        self.open
            .take_if(|open| {
                open.seen_pts
                    .is_some_and(|last| pts.saturating_sub(last) >= timeout)
                    && !open.held_recently_pts(pts)
            })
            .map(|open| open.complete(CompletionReason::IdleTimeout))
    }

    /// A frame tagged with `order_id`: it belongs to the open order, or ends it and opens
    /// its own. A frame of the open order `max_duration` or more after the first frame of
    /// the segment (on the frames' timestamps, like the gap of [`Self::take_stale`]; `None`:
    /// no limit) completes it (`max-duration`) and opens the next segment of the same
    /// order: an order whose slip stays in view for hours is stored in bounded segments.
    pub fn frame(
        &mut self,
        station_id: String,
        order_id: String,
        pts: Option<gst::ClockTime>,
        unix_ms: u64,
        now: Instant,
        max_duration: Option<Duration>,
    ) -> Admitted {
        let finished = self
            .open
            .take_if(|open| open.order_id != order_id || open.outlasted_by(pts, max_duration))
            .map(|open| {
                let reason = if open.order_id == order_id {
                    CompletionReason::MaxDuration
                } else {
                    CompletionReason::NextOrder
                };
                open.complete(reason)
            });
        let opened = self.open.is_none();
        self.open
            .get_or_insert_with(|| OpenOrder::new(station_id, order_id, now))
            .add_frame(pts, unix_ms, now);
        Admitted { finished, opened }
    }

    /// A frame held for `order_id` (it may still become one of its frames): the open order
    /// of that ID is not idle, though the frame is not counted.
    pub fn held(&mut self, order_id: &str, pts: Option<gst::ClockTime>, now: Instant) {
        if let Some(open) = self.open.as_mut().filter(|o| o.order_id == order_id) {
            open.held_pts = pts.or(open.held_pts);
            open.held_at = Some(now);
        }
    }

    /// `ocrsegment` confirmed `next` (`None`: the slip is no longer read, which leaves the
    /// decision to the idle timeout). A different order ends the open one before its first
    /// frame arrives, so the completion travels ahead of any frame of the next order.
    pub fn order_changed(&mut self, next: Option<&str>) -> Option<OrderComplete> {
        let next = next?;
        self.open
            .take_if(|open| open.order_id != next)
            .map(|open| open.complete(CompletionReason::NextOrder))
    }

    pub fn end_of_stream(&mut self) -> Option<OrderComplete> {
        self.open
            .take()
            .map(|open| open.complete(CompletionReason::EndOfStream))
    }

    /// How long the idle timer may sleep; `None` when there is nothing to time.
    pub fn idle_wait(&self, timeout: Option<Duration>, now: Instant) -> Option<Duration> {
        let (open, timeout) = (self.open.as_ref()?, timeout?);
        Some(open.idle_at(timeout).saturating_duration_since(now))
    }

    /// Completes the open order if no frame of it arrived for `timeout` by `now`.
    pub fn take_idle(&mut self, timeout: Duration, now: Instant) -> Option<OrderComplete> {
        self.open
            .take_if(|open| now >= open.idle_at(timeout))
            .map(|open| open.complete(CompletionReason::IdleTimeout))
    }

    /// Forgets the open order (the element stops); returns its ID and frame count.
    pub fn abandon(&mut self) -> Option<(String, u32)> {
        self.open.take().map(|o| (o.order_id, o.frame_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn secs(s: u64) -> Option<gst::ClockTime> {
        Some(gst::ClockTime::from_seconds(s))
    }

    /// Feeds one frame of `order` at `pts` seconds, seen at `now`.
    fn frame(l: &mut Lifecycle, order: &str, pts: u64, now: Instant) -> Admitted {
        l.frame(
            "station_1".into(),
            order.into(),
            secs(pts),
            1_000 + pts * 1_000,
            now,
            None,
        )
    }

    /// Feeds one frame of `order` at `pts` seconds with a maximum segment of `max`.
    fn frame_max(l: &mut Lifecycle, order: &str, pts: u64, max: Option<Duration>) -> Admitted {
        l.frame(
            "station_1".into(),
            order.into(),
            secs(pts),
            1_000 + pts * 1_000,
            Instant::now(),
            max,
        )
    }

    #[test]
    fn the_next_order_completes_the_open_one() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        assert!(frame(&mut l, "384", 0, t0).opened);
        let again = frame(&mut l, "384", 1, t0);
        assert_eq!(
            again,
            Admitted {
                finished: None,
                opened: false
            }
        );
        assert_eq!(l.open_order(), Some(("384", 2)));
        let next = frame(&mut l, "651", 2, t0);
        assert!(next.opened);
        let done = next.finished.expect("384 completed");
        assert_eq!(done.order_id, "384");
        assert_eq!(done.station_id, "station_1");
        assert_eq!(done.reason, CompletionReason::NextOrder);
        assert_eq!(done.frame_count, 2);
        assert_eq!((done.first_pts, done.last_pts), (secs(0), secs(1)));
        assert_eq!(
            (done.first_unix_ms, done.last_unix_ms),
            (Some(1_000), Some(2_000))
        );
        assert_eq!(l.open_order(), Some(("651", 1)));
    }

    #[test]
    fn frames_without_timestamps_keep_what_was_known() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        l.frame("s".into(), "1".into(), None, 0, t0, None);
        l.frame("s".into(), "1".into(), secs(3), 0, t0, None);
        l.frame("s".into(), "1".into(), None, 0, t0, None);
        let done = l.end_of_stream().unwrap();
        assert_eq!((done.first_pts, done.last_pts), (secs(3), secs(3)));
        // No wall-clock time known: none invented.
        assert_eq!((done.first_unix_ms, done.last_unix_ms), (None, None));
        assert_eq!(done.frame_count, 3);
    }

    #[test]
    fn an_order_change_completes_before_its_first_frame() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        frame(&mut l, "384", 0, t0);
        assert_eq!(
            l.order_changed(None),
            None,
            "a release leaves it to the timer"
        );
        assert_eq!(l.order_changed(Some("384")), None, "the same order goes on");
        let done = l.order_changed(Some("651")).expect("completed");
        assert_eq!(
            (done.order_id.as_str(), done.reason),
            ("384", CompletionReason::NextOrder)
        );
        assert_eq!(l.open_order(), None);
        assert!(frame(&mut l, "651", 1, t0).finished.is_none());
    }

    #[test]
    fn the_idle_timeout_runs_on_the_wall_clock() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        assert_eq!(l.idle_wait(Some(TIMEOUT), t0), None, "nothing open");
        frame(&mut l, "384", 0, t0);
        assert_eq!(l.idle_wait(None, t0), None, "timer disabled");
        assert_eq!(l.idle_wait(Some(TIMEOUT), t0), Some(TIMEOUT));
        let later = t0 + Duration::from_secs(4);
        assert_eq!(
            l.idle_wait(Some(TIMEOUT), later),
            Some(Duration::from_secs(6))
        );
        assert_eq!(l.take_idle(TIMEOUT, later), None);
        // A frame restarts the wait.
        frame(&mut l, "384", 4, later);
        assert_eq!(l.take_idle(TIMEOUT, t0 + TIMEOUT), None);
        let late = later + TIMEOUT;
        assert_eq!(l.idle_wait(Some(TIMEOUT), late), Some(Duration::ZERO));
        let done = l.take_idle(TIMEOUT, late).expect("idle");
        assert_eq!(done.reason, CompletionReason::IdleTimeout);
        assert_eq!(done.frame_count, 2);
        assert_eq!(l.take_idle(TIMEOUT, late), None);
    }

    #[test]
    fn a_timestamp_gap_as_long_as_the_timeout_ends_the_order() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        frame(&mut l, "384", 0, t0);
        frame(&mut l, "384", 5, t0);
        assert_eq!(l.take_stale(secs(14), Some(TIMEOUT)), None);
        assert_eq!(l.take_stale(None, Some(TIMEOUT)), None, "no timestamp");
        assert_eq!(l.take_stale(secs(100), None), None, "timeout disabled");
        let done = l.take_stale(secs(15), Some(TIMEOUT)).expect("gap");
        assert_eq!(
            (done.order_id.as_str(), done.reason, done.frame_count),
            ("384", CompletionReason::IdleTimeout, 2)
        );
        // The same order read again after the gap is a new segment of it.
        assert!(frame(&mut l, "384", 15, t0).opened);
    }

    #[test]
    fn a_gap_before_any_timestamp_is_no_gap() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        l.frame("s".into(), "1".into(), None, 0, t0, None);
        assert_eq!(l.take_stale(secs(1_000), Some(TIMEOUT)), None);
    }

    #[test]
    fn end_of_stream_and_stop() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        assert_eq!(l.end_of_stream(), None);
        frame(&mut l, "925", 0, t0);
        let done = l.end_of_stream().unwrap();
        assert_eq!(done.reason, CompletionReason::EndOfStream);
        assert_eq!(l.end_of_stream(), None, "exactly one completion");
        frame(&mut l, "926", 1, t0);
        frame(&mut l, "926", 2, t0);
        assert_eq!(l.abandon(), Some(("926".into(), 2)));
        assert_eq!(l.open_order(), None);
    }

    #[test]
    fn frames_held_for_the_open_order_keep_it_open() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        frame(&mut l, "384", 0, t0);
        // Held for another order: no effect.
        l.held("651", secs(9), t0 + TIMEOUT);
        assert!(l.take_stale(secs(10), Some(TIMEOUT)).is_some());
        frame(&mut l, "384", 0, t0);
        l.held("384", secs(9), t0 + Duration::from_secs(9));
        assert_eq!(l.take_stale(secs(10), Some(TIMEOUT)), None);
        assert_eq!(l.take_idle(TIMEOUT, t0 + TIMEOUT), None);
        assert_eq!(
            l.idle_wait(Some(TIMEOUT), t0 + TIMEOUT),
            Some(Duration::from_secs(1)),
            "until no frame was held for HOLD_SETTLE"
        );
        frame(&mut l, "384", 12, t0 + Duration::from_secs(12));
        let done = l.end_of_stream().unwrap();
        assert_eq!(done.frame_count, 2, "held frames are not counted");
        assert_eq!((done.first_pts, done.last_pts), (secs(0), secs(12)));
    }

    #[test]
    fn a_slip_that_leaves_completes_its_order_a_timeout_after_its_last_frame() {
        // Frames held for 5 s after the slip left, then an empty table: the idle timeout
        // still counts from the order's last frame, not from the last held one.
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        frame(&mut l, "651", 0, t0);
        for s in 1..=5 {
            l.held("651", secs(s), t0 + Duration::from_secs(s));
        }
        assert_eq!(l.take_stale(secs(9), Some(TIMEOUT)), None);
        let done = l.take_stale(secs(10), Some(TIMEOUT)).unwrap();
        assert_eq!(done.reason, CompletionReason::IdleTimeout);
        frame(&mut l, "652", 20, t0 + Duration::from_secs(20));
        for s in 21..=25 {
            l.held("652", secs(s), t0 + Duration::from_secs(s));
        }
        assert_eq!(l.take_idle(TIMEOUT, t0 + Duration::from_secs(29)), None);
        assert!(l.take_idle(TIMEOUT, t0 + Duration::from_secs(30)).is_some());
    }

    const MAX: Option<Duration> = Some(Duration::from_secs(3));

    #[test]
    fn an_order_longer_than_the_max_duration_continues_in_segments() {
        let mut l = Lifecycle::default();
        for s in 0..3 {
            assert_eq!(frame_max(&mut l, "384", s, MAX).finished, None, "{s} s");
        }
        // 3 s after the segment's first frame: that segment is complete, this frame opens
        // the next one of the same order.
        let next = frame_max(&mut l, "384", 3, MAX);
        assert!(next.opened);
        let done = next.finished.expect("max duration");
        assert_eq!(
            (done.order_id.as_str(), done.reason, done.frame_count),
            ("384", CompletionReason::MaxDuration, 3)
        );
        assert_eq!((done.first_pts, done.last_pts), (secs(0), secs(2)));
        assert_eq!(
            (done.first_unix_ms, done.last_unix_ms),
            (Some(1_000), Some(3_000))
        );
        assert_eq!(l.open_order(), Some(("384", 1)));
        // The next segment counts from its own first frame, at 3 s.
        for s in 4..6 {
            assert_eq!(frame_max(&mut l, "384", s, MAX).finished, None, "{s} s");
        }
        let done = frame_max(&mut l, "384", 6, MAX).finished.expect("again");
        assert_eq!(
            (done.reason, done.frame_count, done.first_pts, done.last_pts),
            (CompletionReason::MaxDuration, 3, secs(3), secs(5))
        );
        // Another order ends the segment as the next order, whatever its length.
        let next = frame_max(&mut l, "651", 20, MAX);
        let done = next.finished.expect("next order");
        assert_eq!(
            (done.order_id.as_str(), done.reason, done.frame_count),
            ("384", CompletionReason::NextOrder, 1)
        );
        assert_eq!(l.open_order(), Some(("651", 1)));
        assert_eq!(
            l.end_of_stream().map(|d| d.reason),
            Some(CompletionReason::EndOfStream)
        );
    }

    #[test]
    fn no_max_duration_never_cuts_an_order() {
        let mut l = Lifecycle::default();
        for s in 0..=7_200 {
            assert_eq!(frame_max(&mut l, "384", s, None).finished, None, "{s} s");
        }
        let done = l.end_of_stream().unwrap();
        assert_eq!(
            (done.reason, done.frame_count),
            (CompletionReason::EndOfStream, 7_201)
        );
    }

    #[test]
    fn the_max_duration_counts_from_the_first_timestamp() {
        let t0 = Instant::now();
        let mut l = Lifecycle::default();
        l.frame("s".into(), "1".into(), None, 0, t0, MAX);
        l.frame("s".into(), "1".into(), secs(10), 0, t0, MAX);
        // Neither an untimed frame nor one within 3 s of the first timestamp cuts it.
        assert_eq!(
            l.frame("s".into(), "1".into(), None, 0, t0, MAX).finished,
            None
        );
        assert_eq!(
            l.frame("s".into(), "1".into(), secs(12), 0, t0, MAX)
                .finished,
            None
        );
        let done = l
            .frame("s".into(), "1".into(), secs(13), 0, t0, MAX)
            .finished
            .expect("3 s after 10 s");
        assert_eq!(
            (done.reason, done.frame_count),
            (CompletionReason::MaxDuration, 4)
        );
    }
}
