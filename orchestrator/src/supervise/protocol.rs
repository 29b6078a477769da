//! The pipeline's output, read as its protocol: the bus messages `gst-launch-1.0 -m`
//! prints (parsed by `oa_contract`, the same module the elements take the names from) and
//! everything else relayed to our log as events carrying the station.

use std::collections::HashSet;
use std::sync::Mutex;

use oa_contract::LaunchMessage;

use crate::status::FrameCounts;

/// What one line of a child's output means to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The pipeline reached PLAYING: the station is running.
    Playing,
    /// The sink rendered frames since its last report: the station is alive. Its
    /// counters since the pipeline started.
    Progress(FrameCounts),
    /// A marker was written: the order can be consumed right away.
    OrderStored(String),
    /// Anything else: a line for the log.
    Line,
}

pub fn classify(line: &str) -> Signal {
    match oa_contract::parse_launch_line(line) {
        Some(LaunchMessage::Playing) => Signal::Playing,
        Some(LaunchMessage::Progress {
            frames_received,
            frames_stored,
            frames_dropped,
            ..
        }) => Signal::Progress(FrameCounts {
            received: frames_received,
            stored: frames_stored,
            dropped: frames_dropped,
        }),
        Some(LaunchMessage::OrderStored { order_id, .. }) => Signal::OrderStored(order_id),
        _ => Signal::Line,
    }
}

/// How loud a relayed line is in our log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loudness {
    /// What an operator follows: an order started, completed or stored, errors and
    /// warnings, anything that is not a bus message.
    Info,
    /// Bus errors and warnings (`(error)`, `(warning)`): the exit that follows says more.
    Warn,
    /// Bus chatter: state changes, OCR reads, stream status, latency.
    Debug,
}

/// The level at which a line of `gst-launch-1.0 -m` output is relayed.
pub fn loudness(line: &str) -> Loudness {
    const BUS: &str = "Got message #";
    if !line.contains(BUS) {
        return Loudness::Info;
    }
    if line.contains(" (error): ") || line.contains(" (warning): ") {
        return Loudness::Warn;
    }
    match oa_contract::parse_launch_line(line) {
        Some(LaunchMessage::OrderComplete { .. } | LaunchMessage::OrderStored { .. }) => {
            Loudness::Info
        }
        Some(LaunchMessage::Element { name, .. })
            if name == oa_contract::messages::ORDER_STARTED
                || name == oa_contract::messages::ORDER_CHANGED =>
        {
            Loudness::Info
        }
        _ => Loudness::Debug,
    }
}

/// GStreamer prints the same registry warnings (a plugin that fails to load, a missing
/// library) at every start of every pipeline: each distinct one is logged once, later
/// repeats at debug level.
#[derive(Default)]
pub struct RepeatFilter {
    seen: Mutex<HashSet<String>>,
}

/// Repeats kept at most; a pathological stream of distinct lines cannot grow the set.
const MAX_REMEMBERED: usize = 256;

impl RepeatFilter {
    /// Whether `line` is a start-up warning already logged once.
    pub fn is_repeat(&self, line: &str) -> bool {
        if !is_startup_warning(line) {
            return false;
        }
        let key = strip_pid(line);
        let mut seen = self.seen.lock().unwrap();
        if seen.contains(&key) {
            return true;
        }
        if seen.len() < MAX_REMEMBERED {
            seen.insert(key);
        }
        false
    }
}

fn is_startup_warning(line: &str) -> bool {
    line.contains("GStreamer-WARNING")
        || line.contains("Failed to load plugin")
        || line.contains("gst-plugin-scanner")
}

/// `(gst-launch-1.0:1234): GStreamer-WARNING` differs per process only by its PID.
fn strip_pid(line: &str) -> String {
    line.chars().filter(|c| !c.is_ascii_digit()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_chatter_is_quiet_order_lifecycle_and_errors_are_not() {
        let bus = |kind: &str, s: &str| format!("Got message #7 from element \"e\" ({kind}): {s}");
        let l = |kind, s| loudness(&bus(kind, s));
        assert_eq!(l("element", "ocr-read, text=(string)x;"), Loudness::Debug);
        assert_eq!(
            l(
                "state-changed",
                "GstMessageStateChanged, old-state=(GstState)null;"
            ),
            Loudness::Debug
        );
        assert_eq!(
            l(
                "element",
                "order-started, station-id=(string)s, order-id=(string)1;"
            ),
            Loudness::Info
        );
        assert_eq!(
            l(
                "element",
                "order-complete, station-id=(string)s, order-id=(string)1, \
                 reason=(string)idle-timeout, frame-count=(uint)3;"
            ),
            Loudness::Info
        );
        assert_eq!(
            l("error", "GstMessageError, gerror=(GError)NULL;"),
            Loudness::Warn
        );
        assert_eq!(loudness("Setting pipeline to PLAYING ..."), Loudness::Info);
    }

    #[test]
    fn registry_warnings_are_logged_once_other_lines_always() {
        let f = RepeatFilter::default();
        let w1 = "(gst-launch-1.0:101): GStreamer-WARNING **: Failed to load plugin 'x.so'";
        let w2 = "(gst-launch-1.0:202): GStreamer-WARNING **: Failed to load plugin 'x.so'";
        assert!(!f.is_repeat(w1));
        assert!(f.is_repeat(w2), "same warning from another child");
        assert!(!f.is_repeat("ERROR: from element /GstPipeline:pipeline0"));
        assert!(!f.is_repeat("ERROR: from element /GstPipeline:pipeline0"));
    }

    #[test]
    fn plain_lines_are_log_lines() {
        assert_eq!(classify("Setting pipeline to PAUSED ..."), Signal::Line);
    }
}
