//! Logs through `tracing` ([`oa_cli::init_logging`]): levels, `RUST_LOG`, text or JSON
//! lines on stderr. The AWS SDK and ONNX Runtime emit `tracing` events too; they show at
//! `warn` and above unless `RUST_LOG` asks for more.
//!
//! [`Throttle`] rate-limits a line that repeats while a fault lasts (a webhook receiver
//! down, a broker unreachable, a pipeline printing the same warning at every frame): the
//! first occurrence is logged, then at most one line per interval saying how many were
//! left out, and one line at info level when the fault clears. Pure: the caller passes
//! the time. The plugin has the same helper (`gst-plugins/orderaccuracy/src/throttle.rs`;
//! the two crates share no crate but `oa-contract` and `oa-ocr`, neither a place for
//! logging); keep them alike.

use std::fmt;
use std::time::{Duration, Instant};

pub use oa_cli::LogFormat;

/// Our own crates at `info`, everybody else's at `warn`; `RUST_LOG` overrides.
pub const DEFAULT_FILTER: &str = "warn,orchestrator=info,oa_ocr=info,oa_s3server=info";

/// Installs the global subscriber. Called once by a binary's `main`; a second call (tests
/// that start several servers in one process) keeps the first.
pub fn init(format: LogFormat) {
    oa_cli::init_logging(format, DEFAULT_FILTER);
}

/// [`init`] for a command whose output is its report: warnings and errors only, unless
/// `RUST_LOG` says otherwise.
pub fn init_quiet(format: LogFormat) {
    oa_cli::init_logging(format, "warn");
}

/// How often a repeating fault is logged by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// One repeating log line. [`Throttle::hit`] at every occurrence, [`Throttle::clear`]
/// when the fault is gone.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    /// When a line was last let through.
    last_report: Option<Instant>,
    /// Occurrences left out since that line.
    suppressed: u64,
    /// The current fault: when it began, how often it occurred, whether its first
    /// occurrence was logged.
    episode: Option<Episode>,
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    since: Instant,
    occurrences: u64,
    reported: bool,
}

/// An occurrence to log; its `Display` is what to append to the message: nothing for the
/// first of a fault, else ` (N more since ...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Occurrences left out since the previous line.
    pub suppressed: u64,
    /// Time since the previous line, `None` for the first.
    pub since_last: Option<Duration>,
    /// Time since the fault began.
    pub since_first: Duration,
    /// The first occurrence of this fault (an earlier one cleared, or none came before).
    pub new_fault: bool,
}

/// The fault is gone; its `Display` reads ` after N occurrences in ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    pub occurrences: u64,
    pub lasted: Duration,
    /// Occurrences left out since the last line.
    pub unreported: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last_report: None,
            suppressed: 0,
            episode: None,
        }
    }

    /// An occurrence at `now`: `Some` when it is to be logged, `None` when it is left out
    /// (and counted). A fault that comes back within the interval of the last line (it
    /// flaps) is left out too, so flapping costs at most two lines per interval.
    pub fn hit(&mut self, now: Instant) -> Option<Report> {
        let episode = self.episode.get_or_insert(Episode {
            since: now,
            occurrences: 0,
            reported: false,
        });
        episode.occurrences += 1;
        let new_fault = !episode.reported && episode.occurrences == 1;
        let since_first = now.saturating_duration_since(episode.since);
        let since_last = self.last_report.map(|t| now.saturating_duration_since(t));
        if since_last.is_some_and(|d| d < self.interval) {
            self.suppressed += 1;
            return None;
        }
        episode.reported = true;
        self.last_report = Some(now);
        Some(Report {
            suppressed: std::mem::take(&mut self.suppressed),
            since_last,
            since_first,
            new_fault,
        })
    }

    /// The fault is gone at `now`: `Some` when its first occurrence was logged (so the
    /// clearing is worth a line), `None` when there was no fault or nobody was told of it.
    pub fn clear(&mut self, now: Instant) -> Option<Cleared> {
        let episode = self.episode.take()?;
        if !episode.reported {
            return None;
        }
        Some(Cleared {
            occurrences: episode.occurrences,
            lasted: now.saturating_duration_since(episode.since),
            unreported: std::mem::take(&mut self.suppressed),
        })
    }

    /// Whether a fault is going on (hit since the last clear).
    pub fn active(&self) -> bool {
        self.episode.is_some()
    }
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(DEFAULT_INTERVAL)
    }
}

/// `42 s`, `3 min`, `5 h`, `2 d`: coarse, for log lines.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.since_last {
            None => Ok(()),
            Some(_) if self.new_fault && self.suppressed == 0 => Ok(()),
            // The previous line belonged to an earlier fault (it flaps).
            Some(last) if self.new_fault => {
                write!(f, " ({} more since {} ago)", self.suppressed, human(last))
            }
            Some(last) => write!(
                f,
                " ({} more since {} ago; first {} ago)",
                self.suppressed,
                human(last),
                human(self.since_first)
            ),
        }
    }
}

impl fmt::Display for Cleared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " after {} occurrence{} in {}",
            self.occurrences,
            if self.occurrences == 1 { "" } else { "s" },
            human(self.lasted)
        )?;
        if self.unreported > 0 {
            write!(f, " ({} not logged)", self.unreported)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn first_then_once_per_interval_with_counts() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        let first = t.hit(t0).expect("first occurrence is logged");
        assert_eq!(first.suppressed, 0);
        assert_eq!(first.to_string(), "");
        // Every second for a minute: left out.
        for s in 1..60 {
            assert_eq!(t.hit(at(t0, s)), None, "second {s}");
        }
        let again = t.hit(at(t0, 60)).expect("a minute later");
        assert_eq!(again.suppressed, 59);
        assert_eq!(
            again.to_string(),
            " (59 more since 60 s ago; first 60 s ago)"
        );
        assert!(t.hit(at(t0, 61)).is_none());
        let third = t.hit(at(t0, 200)).unwrap();
        assert_eq!(third.suppressed, 1);
        assert_eq!(
            third.to_string(),
            " (1 more since 2 min ago; first 3 min ago)"
        );
        assert!(t.active());
        let cleared = t.clear(at(t0, 7300)).expect("the fault was logged");
        assert_eq!(
            cleared,
            Cleared {
                occurrences: 63,
                lasted: Duration::from_secs(7300),
                unreported: 0
            }
        );
        assert_eq!(cleared.to_string(), " after 63 occurrences in 2 h");
        assert!(!t.active());
        assert_eq!(t.clear(at(t0, 7301)), None, "cleared once");
    }

    #[test]
    fn a_new_fault_after_the_interval_is_logged_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        assert!(t.hit(t0).is_some());
        assert!(t.clear(at(t0, 1)).is_some());
        let r = t.hit(at(t0, 100)).expect("a new fault");
        assert_eq!(r.suppressed, 0);
        assert!(r.new_fault);
        assert_eq!(r.to_string(), "", "a new fault reads as the first one");
        // Still there two minutes later, nothing in between.
        let r = t.hit(at(t0, 220)).unwrap();
        assert_eq!(r.to_string(), " (0 more since 2 min ago; first 2 min ago)");
    }

    #[test]
    fn flapping_costs_at_most_two_lines_per_interval() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        let mut lines = 0;
        // Fault and recovery alternate every second for ten minutes.
        for s in 0..600 {
            if s % 2 == 0 {
                lines += usize::from(t.hit(at(t0, s)).is_some());
            } else {
                lines += usize::from(t.clear(at(t0, s)).is_some());
            }
        }
        assert_eq!(lines, 20, "one warning and one clearing per minute");
        // The occurrences left out are counted in the next line.
        let mut t = Throttle::new(MIN);
        t.hit(t0);
        t.clear(at(t0, 1));
        assert!(t.hit(at(t0, 2)).is_none());
        assert_eq!(t.clear(at(t0, 3)), None, "nobody was told of that fault");
        assert_eq!(t.hit(at(t0, 61)).unwrap().suppressed, 1);
        let c = t.clear(at(t0, 62)).unwrap();
        assert_eq!(c.to_string(), " after 1 occurrence in 1 s");
    }

    #[test]
    fn clearing_reports_what_was_left_out() {
        let t0 = Instant::now();
        let mut t = Throttle::new(MIN);
        t.hit(t0);
        t.hit(at(t0, 5));
        t.hit(at(t0, 10));
        let c = t.clear(at(t0, 11)).unwrap();
        assert_eq!(c.unreported, 2);
        assert_eq!(c.to_string(), " after 3 occurrences in 11 s (2 not logged)");
        assert_eq!(Throttle::default().clear(t0), None, "no fault, no line");
    }

    #[test]
    fn durations_read_coarsely() {
        let d = Duration::from_secs;
        assert_eq!(human(d(0)), "0 s");
        assert_eq!(human(d(119)), "119 s");
        assert_eq!(human(d(120)), "2 min");
        assert_eq!(human(d(7199)), "119 min");
        assert_eq!(human(d(7200)), "2 h");
        assert_eq!(human(d(3 * 86_400)), "3 d");
    }
}
