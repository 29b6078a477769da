//! `[retention]`: how long frames, markers, results and claims are kept.

use super::{ConfigError, positive};
use serde::Deserialize;

/// Most keys one DeleteObjects request may name (an S3 limit).
pub const MAX_RETENTION_BATCH: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after which an order's frames and marker are deleted (the newest object of
    /// the order counts); 0 never. Photos of customers: 7 by default.
    pub frames_days: u64,
    /// Days after which results are deleted; 0 (default) keeps them forever.
    pub results_days: u64,
    /// Seconds between passes (the first runs shortly after start).
    pub interval_s: u64,
    /// Keys per DeleteObjects request (1..=1000).
    pub batch: usize,
    /// Milliseconds slept between two delete requests, so a pass never floods the store.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            frames_days: 7,
            results_days: 0,
            interval_s: 3600,
            batch: 500,
            pause_ms: 200,
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("retention.interval_s", self.interval_s)?;
        positive("retention.batch", self.batch as u64)?;
        if self.batch > MAX_RETENTION_BATCH {
            return Err(ConfigError::new(
                "retention.batch",
                format!("at most {MAX_RETENTION_BATCH} keys (one DeleteObjects request)"),
            ));
        }
        // A result deleted while its marker is still stored makes the order look new:
        // it would be recognised again and its events sent again.
        if self.results_days > 0 && (self.frames_days == 0 || self.results_days < self.frames_days)
        {
            return Err(ConfigError::new(
                "retention.results_days",
                format!(
                    "{} days would delete results before their orders' markers (frames_days \
                     = {}), and those orders would be processed again: use 0 (keep \
                     results) or at least frames_days (which must then be > 0)",
                    self.results_days, self.frames_days
                ),
            ));
        }
        Ok(())
    }

    /// Whether anything is ever deleted.
    pub fn enabled(&self) -> bool {
        self.frames_days > 0 || self.results_days > 0
    }
}
