//! The pipeline's output, read as its protocol: the bus messages `gst-launch-1.0 -m`
//! prints (parsed by `oa_contract`, the same module the elements take the names from) and
//! everything else relayed to our log as events carrying the station.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use oa_contract::LaunchMessage;

use crate::logging::{Report, Throttle};
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

/// What a failed `gst-launch-1.0` says on one line of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchFailure {
    /// `ERROR: from element /GstPipeline:pipeline0/...: <what>`: an element failed.
    Element(String),
    /// `WARNING: erroneous pipeline: <what>`: the pipeline could not be built.
    Unbuildable(String),
}

/// The failure a line reports, if it is one ([`LaunchFailure`]).
pub fn launch_failure(line: &str) -> Option<LaunchFailure> {
    if let Some(what) = line.strip_prefix("ERROR: from element ") {
        let what = what.split_once(": ").map_or(what, |(_, w)| w);
        Some(LaunchFailure::Element(what.trim().to_owned()))
    } else {
        line.strip_prefix("WARNING: erroneous pipeline: ")
            .map(|what| LaunchFailure::Unbuildable(what.trim().to_owned()))
    }
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

/// Where a line of GStreamer's own log (`GST_DEBUG`, no colours) comes from, when it is a
/// warning or an error: `{category} {file}:{line}`, e.g. `minioframesink imp.rs:376` for
///
/// `0:00:05.1 4242 0x55d0 WARN  minioframesink imp.rs:376:upload:<sink> PUT ... failed`
pub fn log_site(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let time = words.next()?;
    let pid = words.next()?;
    let thread = words.next()?;
    let level = words.next()?;
    let category = words.next()?;
    let place = words.next()?;
    let is_time = time.split(':').count() == 3
        && time
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.');
    if !is_time || !pid.chars().all(|c| c.is_ascii_digit()) || !thread.starts_with("0x") {
        return None;
    }
    if !matches!(level, "ERROR" | "WARN" | "FIXME") {
        return None;
    }
    let mut parts = place.splitn(3, ':');
    let file = parts.next()?;
    let line_no = parts.next()?;
    if file.is_empty() || line_no.is_empty() || !line_no.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{category} {file}:{line_no}"))
}

/// Sites throttled at most per stream; beyond, a new site is relayed unthrottled.
const MAX_SITES: usize = 128;

/// What to do with one relayed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Not a GStreamer warning: relay it as it is.
    Plain,
    /// Relay it with this said after it (the first of its site, or once per interval).
    Report(Report),
    /// Its site was reported less than an interval ago: debug level only.
    Quiet,
}

/// An element warning at every frame while a fault lasts (a store that refuses every PUT)
/// floods the log: per call site of one pipeline's output, the first line is relayed,
/// then at most one per minute with the number left out (those go at debug level).
#[derive(Default)]
pub struct SiteThrottle {
    sites: HashMap<String, Throttle>,
}

impl SiteThrottle {
    pub fn check(&mut self, line: &str, now: Instant) -> Relay {
        let Some(site) = log_site(line) else {
            return Relay::Plain;
        };
        if !self.sites.contains_key(&site) && self.sites.len() >= MAX_SITES {
            return Relay::Plain;
        }
        match self.sites.entry(site).or_default().hit(now) {
            Some(r) => Relay::Report(r),
            None => Relay::Quiet,
        }
    }

    /// The output ended: per site, the lines left out since its last report.
    pub fn finish(&mut self, now: Instant) -> Vec<(String, u64)> {
        let mut left: Vec<(String, u64)> = self
            .sites
            .drain()
            .filter_map(|(site, mut t)| {
                let c = t.clear(now)?;
                (c.unreported > 0).then_some((site, c.unreported))
            })
            .collect();
        left.sort();
        left
    }
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
    fn element_warnings_are_relayed_once_a_minute_per_call_site() {
        let put = |n: u32| {
            format!(
                "0:00:{n:02}.123456789 4242 0x55d0c0a0 WARN          minioframesink \
                 imp.rs:376:gstorderaccuracy::minioframesink::imp::upload::{{{{closure}}}}: \
                 PUT frames/s1/{n}/frame_{n}.jpg failed (attempt 1), retrying in 1s: refused"
            )
        };
        assert_eq!(
            log_site(&put(1)).as_deref(),
            Some("minioframesink imp.rs:376")
        );
        assert_eq!(
            log_site("0:00:01.5 7 0x1 ERROR ocrsegment imp.rs:90:f:<ocrsegment0> x").as_deref(),
            Some("ocrsegment imp.rs:90")
        );
        for quiet in [
            "0:00:01.5 7 0x1 INFO eosmarker imp.rs:105:f:<e> order 384 opened",
            "Setting pipeline to PLAYING ...",
            "ERROR: from element /GstPipeline:pipeline0/GstCameraSrc:camerasrc0: gone",
            "Got message #7 from element \"e\" (warning): GstMessageWarning",
        ] {
            assert_eq!(log_site(quiet), None, "{quiet}");
        }
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let mut f = SiteThrottle::default();
        assert_eq!(f.check("Setting pipeline to PAUSED ...", t0), Relay::Plain);
        assert!(matches!(f.check(&put(0), t0), Relay::Report(r) if r.suppressed == 0));
        for n in 1..30 {
            assert_eq!(f.check(&put(n), at(u64::from(n))), Relay::Quiet);
        }
        // Another call site is its own fault.
        let other = "0:00:31.0 4242 0x55d0 WARN minioframesink imp.rs:1161:f:<s> Not storing";
        assert!(matches!(f.check(other, at(31)), Relay::Report(_)));
        match f.check(&put(59), at(60)) {
            Relay::Report(r) => assert_eq!(r.suppressed, 29),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.check(&put(1), at(61)), Relay::Quiet);
        assert_eq!(
            f.finish(at(62)),
            vec![("minioframesink imp.rs:376".to_owned(), 1)]
        );
    }

    #[test]
    fn plain_lines_are_log_lines() {
        assert_eq!(classify("Setting pipeline to PAUSED ..."), Signal::Line);
    }

    #[test]
    fn launch_failures_are_told_apart() {
        assert_eq!(
            launch_failure(
                "ERROR: from element /GstPipeline:pipeline0/GstFileSrc:filesrc0: Resource not found."
            ),
            Some(LaunchFailure::Element("Resource not found.".into()))
        );
        assert_eq!(
            launch_failure("WARNING: erroneous pipeline: no element \"ocrsegment\""),
            Some(LaunchFailure::Unbuildable(
                "no element \"ocrsegment\"".into()
            ))
        );
        assert_eq!(launch_failure("Setting pipeline to PAUSED ..."), None);
    }
}
