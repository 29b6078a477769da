//! When the sink posts its progress message: on reaching PLAYING, then at most once per
//! interval while buffers arrive, and once more at end of stream. A pipeline that renders nothing posts nothing, which is
//! what lets a supervisor tell a stalled pipeline from a quiet one.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ProgressClock {
    /// `None`: progress messages are off.
    interval: Option<Duration>,
    last: Option<Instant>,
}

impl ProgressClock {
    /// `interval` zero turns the messages off.
    pub fn new(interval: Duration) -> Self {
        ProgressClock {
            interval: (!interval.is_zero()).then_some(interval),
            last: None,
        }
    }

    /// The element reached PLAYING: post now (unless off), and count the interval from here.
    pub fn playing(&mut self, now: Instant) -> bool {
        if self.interval.is_none() {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// End of stream, every frame stored: post the final counts now (unless off), so that
    /// a reader of a finite stream sees them all.
    pub fn ended(&mut self, now: Instant) -> bool {
        self.playing(now)
    }

    /// A buffer was rendered at `now`: whether to post.
    pub fn rendered(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut c = ProgressClock::new(S);
        assert!(c.rendered(t0), "the first buffer posts");
        assert!(!c.rendered(t0 + S / 2));
        assert!(c.rendered(t0 + S));
        assert!(!c.rendered(t0 + S + S / 10));
        // A long quiet spell: the next buffer posts at once.
        assert!(c.rendered(t0 + 10 * S));
    }

    #[test]
    fn playing_posts_and_restarts_the_interval() {
        let t0 = Instant::now();
        let mut c = ProgressClock::new(2 * S);
        assert!(c.playing(t0));
        assert!(!c.rendered(t0 + S));
        assert!(c.rendered(t0 + 2 * S));
    }

    #[test]
    fn zero_turns_it_off() {
        let t0 = Instant::now();
        let mut c = ProgressClock::new(Duration::ZERO);
        assert!(!c.playing(t0));
        assert!(!c.rendered(t0));
        assert!(!c.rendered(t0 + 100 * S));
    }
}
