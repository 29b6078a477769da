//! When to restart a pipeline, and after how long: a pure function of the run that ended.

use std::time::Duration;

/// The restart policy of `[supervision]`.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Delays between restarts; the last one repeats.
    pub backoff: Vec<Duration>,
    /// A run at least this long (after reaching PLAYING) resets the failure count.
    pub stable_after: Duration,
    /// Consecutive failed restarts after which the station shows as failing; it is still
    /// restarted, at the last backoff step, as Kubernetes does with CrashLoopBackOff.
    pub max_failed_restarts: u32,
}

/// What to do after a pipeline ended: start it again after `delay`. A station is never
/// given up for good: a camera or a store that is back must be picked up by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    /// Consecutive failures so far, this one included.
    pub failures: u32,
    /// More than `max_failed_restarts` in a row: show the station as failing.
    pub failing: bool,
}

impl RestartPolicy {
    /// `failures`: consecutive failures before this run; `ran_stable`: whether this run
    /// stayed up for `stable_after`.
    pub fn after_exit(&self, failures: u32, ran_stable: bool) -> Decision {
        let failures = if ran_stable { 0 } else { failures };
        let delay = self
            .backoff
            .get(failures as usize)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        Decision {
            delay,
            failures: failures + 1,
            failing: failures >= self.max_failed_restarts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff: [2u64, 4, 8].map(Duration::from_secs).to_vec(),
            stable_after: Duration::from_secs(60),
            max_failed_restarts: 4,
        }
    }

    #[test]
    fn backoff_grows_then_repeats_its_last_step_failing_but_never_given_up() {
        let p = policy();
        let mut failures = 0;
        let mut seen = vec![];
        for _ in 0..7 {
            let d = p.after_exit(failures, false);
            seen.push((d.delay.as_secs(), d.failing));
            failures = d.failures;
        }
        assert_eq!(
            seen,
            [
                (2, false),
                (4, false),
                (8, false),
                (8, false),
                (8, true),
                (8, true),
                (8, true)
            ]
        );
    }

    #[test]
    fn a_stable_run_starts_the_backoff_over() {
        assert_eq!(
            policy().after_exit(9, true),
            Decision {
                delay: Duration::from_secs(2),
                failures: 1,
                failing: false,
            }
        );
    }
}
