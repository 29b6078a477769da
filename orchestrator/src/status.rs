//! What the API, the metrics and the dashboard show about a station: shared by the
//! supervisor that fills it and the readers that render it, so neither imports the other.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    Backoff,
    /// More than `max_failed_restarts` restarts in a row failed: still retried at the
    /// last backoff step, until the camera or the store is back. (The first release
    /// gave up here with `failed`.)
    Failing,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Failing => "failing",
            State::Stopped => "stopped",
        }
    }
}

/// What the API and the metrics show about a station.
#[derive(Debug, Clone, Serialize)]
pub struct StationStatus {
    pub station_id: String,
    pub state: State,
    pub pid: Option<u32>,
    /// Restarts since the orchestrator started.
    pub restarts: u32,
    /// Consecutive failed restarts (reset after a stable run).
    pub consecutive_failures: u32,
    /// Seconds since the current child reached PLAYING (0 when not running).
    pub uptime_s: f64,
    pub pipeline_instance: Option<String>,
    pub last_exit: Option<String>,
    /// Backoff delays applied so far, in milliseconds (the last 32).
    pub backoff_history_ms: Vec<u64>,
    /// Unix ms of each child start (the last 32).
    pub start_history_unix_ms: Vec<u64>,
}
