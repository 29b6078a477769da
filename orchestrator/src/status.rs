//! What the API, the metrics and the dashboard show about a station: shared by the
//! supervisor that fills it and the readers that render it, so neither imports the other.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// A recorded file played to its end (`loop = false`): not restarted, not failed.
    Finished,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Failing => "failing",
            State::Stopped => "stopped",
            State::Finished => "finished",
        }
    }
}

/// What the API and the metrics show about a station.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Frames the station's sinks reported, summed over every pipeline run since the
    /// orchestrator started (from `sink-progress`).
    pub frames: FrameCounts,
    /// The configuration revision the station runs with: 1 from the start, and the
    /// revision of the reload that added it or changed its settings.
    pub config_revision: u64,
    /// Unix ms when the station was started with its current settings.
    pub configured_unix_ms: u64,
}

impl StationStatus {
    /// A station whose first pipeline is about to start.
    pub fn new(station_id: impl Into<String>) -> StationStatus {
        StationStatus {
            station_id: station_id.into(),
            state: State::Starting,
            pid: None,
            restarts: 0,
            consecutive_failures: 0,
            uptime_s: 0.0,
            pipeline_instance: None,
            last_exit: None,
            backoff_history_ms: vec![],
            start_history_unix_ms: vec![],
            frames: FrameCounts::default(),
            config_revision: 1,
            configured_unix_ms: 0,
        }
    }
}

/// Frame counters of a station's `minioframesink`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FrameCounts {
    pub received: u64,
    pub stored: u64,
    /// Not stored: frames of no order (between orders), held frames no order took,
    /// frames with an invalid order ID (the sink's `frames-dropped-untagged`).
    pub dropped: u64,
}

impl FrameCounts {
    pub fn plus(self, o: FrameCounts) -> FrameCounts {
        FrameCounts {
            received: self.received + o.received,
            stored: self.stored + o.stored,
            dropped: self.dropped + o.dropped,
        }
    }
}
