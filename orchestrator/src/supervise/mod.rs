//! Supervision of one `gst-launch-1.0 -e -m` child per station.
//!
//! * Start: `pipelines_dir/<pipeline>` is rendered with [`oa_contract::render_pipeline`]
//!   and split with [`oa_contract::pipeline_args`]; [`child`] says how the process is
//!   started (own process group, parent-death signal, `LC_ALL=C`). The environment is
//!   inherited (`AWS_*`); no secret is ever put on the command line.
//! * Readiness and liveness come from messages the pipeline posts on purpose, parsed by
//!   [`protocol`]: a station is `starting` until the pipeline reports PLAYING, then
//!   `running`. `minioframesink` reports progress while frames flow and every marker it
//!   stores; markers found by the consumer ([`Supervisor::note_progress`]) count too. A
//!   running station with no progress for `stall_timeout` is *stalled* and restarted
//!   (`stall_timeout` zero disables this; set it above the longest quiet period).
//! * Restart after a backoff chosen by [`policy`]; after `max_failed_restarts` consecutive
//!   failed restarts the station is `failing` and is retried at the last backoff step
//!   until it runs again; the others keep running.
//! * Shutdown: SIGINT to each child's process group (gst-launch `-e` turns it into EOS and
//!   the open order is flushed), `shutdown_grace` later SIGKILL to the group.

pub mod child;
pub mod policy;
pub mod protocol;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal as Sig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinSet;

use crate::shutdown::{Shutdown, Stopping};
use crate::status::{State, StationStatus};
use child::{Launch, Spawner, describe_exit, signal_group};
use policy::RestartPolicy;
use protocol::{RepeatFilter, Signal};

/// One station as the supervisor needs it.
#[derive(Debug, Clone)]
pub struct StationSpec {
    pub id: String,
    pub source: String,
    /// File name inside the pipelines folder.
    pub pipeline: String,
    pub roi: Option<String>,
    pub idle_timeout_ms: u32,
}

/// Where the pipelines store frames and markers.
#[derive(Debug, Clone, Default)]
pub struct StorageTarget {
    /// Empty for AWS's default endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
}

/// Supervision settings (from `[supervision]`; durations so that tests can scale them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub gst_launch: PathBuf,
    pub pipelines_dir: PathBuf,
    pub plugin_path: Option<PathBuf>,
    pub backoff: Vec<Duration>,
    pub stable_after: Duration,
    pub max_failed_restarts: u32,
    /// Zero disables stall detection.
    pub stall_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Settings {
    /// The default backoff sequence (2, 4, 8, 16, 32, 60) scaled by `unit` (one second in
    /// production).
    pub fn default_backoff(unit: Duration) -> Vec<Duration> {
        [2u32, 4, 8, 16, 32, 60].iter().map(|n| unit * *n).collect()
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            backoff: self.backoff.clone(),
            stable_after: self.stable_after,
            max_failed_restarts: self.max_failed_restarts,
        }
    }

    fn launch(&self) -> Launch {
        Launch {
            gst_launch: self.gst_launch.clone(),
            plugin_path: self.plugin_path.clone(),
        }
    }
}

/// Called with (station, order) for every `order-stored` message of a pipeline.
pub type MarkerCallback = Box<dyn Fn(&str, &str) + Send + Sync>;
type MarkerHook = Arc<Mutex<Option<MarkerCallback>>>;

/// What every station task shares.
struct Shared {
    settings: Settings,
    storage: StorageTarget,
    spawner: Spawner,
    hook: MarkerHook,
    repeats: RepeatFilter,
}

struct Station {
    spec: StationSpec,
    status: Mutex<StationStatus>,
    playing_since: Mutex<Option<Instant>>,
    last_progress: Mutex<Instant>,
}

impl Station {
    fn set_state(&self, state: State) {
        self.status.lock().unwrap().state = state;
    }

    fn progressed(&self) {
        *self.last_progress.lock().unwrap() = Instant::now();
    }
}

/// Runs and watches every station's pipeline.
pub struct Supervisor {
    stations: Vec<Arc<Station>>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn push_capped<T>(v: &mut Vec<T>, x: T) {
    if v.len() >= 32 {
        v.remove(0);
    }
    v.push(x);
}

/// Renders the pipeline of `spec`; errors name the file and the problem.
pub fn render(
    settings: &Settings,
    storage: &StorageTarget,
    spec: &StationSpec,
    instance: &str,
) -> Result<Vec<String>, String> {
    let path = settings.pipelines_dir.join(&spec.pipeline);
    let template = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read pipeline {}: {e}", path.display()))?;
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("station_id", spec.id.clone());
    values.insert("source", spec.source.clone());
    values.insert("roi", spec.roi.clone().unwrap_or_default());
    values.insert("idle_timeout_ms", spec.idle_timeout_ms.to_string());
    values.insert("endpoint", storage.endpoint.clone());
    values.insert("bucket", storage.bucket.clone());
    values.insert("prefix", storage.prefix.clone());
    values.insert("pipeline_instance", instance.to_owned());
    let rendered = oa_contract::render_pipeline(&template, &values)
        .map_err(|e| format!("pipeline {}: {e}", path.display()))?;
    Ok(oa_contract::pipeline_args(&rendered))
}

enum Ended {
    Exited(String),
    Stalled,
    Shutdown,
}

impl Supervisor {
    /// Checks every station's pipeline renders, then starts them all.
    pub fn start(
        settings: Settings,
        storage: StorageTarget,
        specs: Vec<StationSpec>,
    ) -> Result<Arc<Supervisor>, String> {
        for spec in &specs {
            render(&settings, &storage, spec, "check")
                .map_err(|e| format!("station {}: {e}", spec.id))?;
        }
        let shared = Arc::new(Shared {
            settings,
            storage,
            spawner: Spawner::new(),
            hook: Arc::new(Mutex::new(None)),
            repeats: RepeatFilter::default(),
        });
        let stations: Vec<Arc<Station>> = specs
            .into_iter()
            .map(|spec| {
                Arc::new(Station {
                    status: Mutex::new(StationStatus {
                        station_id: spec.id.clone(),
                        state: State::Starting,
                        pid: None,
                        restarts: 0,
                        consecutive_failures: 0,
                        uptime_s: 0.0,
                        pipeline_instance: None,
                        last_exit: None,
                        backoff_history_ms: vec![],
                        start_history_unix_ms: vec![],
                    }),
                    spec,
                    playing_since: Mutex::new(None),
                    last_progress: Mutex::new(Instant::now()),
                })
            })
            .collect();
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        for st in &stations {
            tasks.spawn(run_station(st.clone(), shared.clone(), shutdown.listener()));
        }
        Ok(Arc::new(Supervisor {
            stations,
            shared,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
        }))
    }

    /// Every station's status, in configuration order.
    pub fn statuses(&self) -> Vec<StationStatus> {
        self.stations
            .iter()
            .map(|st| {
                let mut s = st.status.lock().unwrap().clone();
                s.uptime_s = match (*st.playing_since.lock().unwrap(), s.state) {
                    (Some(t), State::Running) => t.elapsed().as_secs_f64(),
                    _ => 0.0,
                };
                s
            })
            .collect()
    }

    /// Calls `f(station, order)` for every marker a pipeline reports as stored.
    pub fn on_order_stored(&self, f: MarkerCallback) {
        *self.shared.hook.lock().unwrap() = Some(f);
    }

    /// Records a sign of progress of `station` seen elsewhere (a new marker).
    pub fn note_progress(&self, station: &str) {
        for st in self.stations.iter().filter(|st| st.spec.id == station) {
            st.progressed();
        }
    }

    /// SIGINT to every pipeline group, SIGKILL after the grace period; returns when every
    /// child has exited.
    pub async fn shutdown(&self) {
        self.shutdown.trigger();
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }
}

async fn run_station(st: Arc<Station>, shared: Arc<Shared>, mut stopping: Stopping) {
    let id = st.spec.id.clone();
    let policy = shared.settings.policy();
    let mut failures: u32 = 0;
    let mut start_n: u32 = 0;
    while !stopping.is_stopping() {
        start_n += 1;
        let instance = format!("{id}-{}-{start_n}", std::process::id());
        let ended = run_once(&st, &shared, &instance, &mut stopping).await;
        let stable = st
            .playing_since
            .lock()
            .unwrap()
            .take()
            .is_some_and(|t| t.elapsed() >= policy.stable_after);
        let why = match ended {
            Ended::Shutdown => break,
            Ended::Exited(why) => why,
            Ended::Stalled => "stalled".to_owned(),
        };
        {
            let mut s = st.status.lock().unwrap();
            s.pid = None;
            s.last_exit = Some(why.clone());
        }
        let decision = policy.after_exit(failures, stable);
        failures = decision.failures;
        let delay = decision.delay;
        {
            let mut s = st.status.lock().unwrap();
            s.state = if decision.failing {
                State::Failing
            } else {
                State::Backoff
            };
            s.restarts += 1;
            s.consecutive_failures = failures;
            push_capped(&mut s.backoff_history_ms, delay.as_millis() as u64);
        }
        if decision.failing {
            tracing::error!(
                station = %id,
                "pipeline failing: {failures} restarts in a row failed, last: {why}; \
                 retrying every {:.0}s until it runs",
                delay.as_secs_f64()
            );
        } else {
            tracing::warn!(
                station = %id,
                "pipeline ended ({why}); restart {failures} in {:.1}s",
                delay.as_secs_f64()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait() => break,
        }
    }
    let mut s = st.status.lock().unwrap();
    s.state = State::Stopped;
    s.pid = None;
}

/// Reads one of the child's output streams until it closes.
async fn relay(
    st: Arc<Station>,
    shared: Arc<Shared>,
    stream: impl AsyncRead + Unpin,
    name: &'static str,
) {
    let id = st.spec.id.as_str();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match protocol::classify(&line) {
            Signal::Playing => {
                st.progressed();
                *st.playing_since.lock().unwrap() = Some(Instant::now());
                st.set_state(State::Running);
                tracing::info!(station = %id, "pipeline is playing");
            }
            Signal::Progress => st.progressed(),
            Signal::OrderStored(order) => {
                st.progressed();
                tracing::debug!(station = %id, stream = name, "{line}");
                if let Some(f) = shared.hook.lock().unwrap().as_ref() {
                    f(id, &order);
                }
            }
            Signal::Line if shared.repeats.is_repeat(&line) => {
                tracing::debug!(station = %id, stream = name, "{line}");
            }
            Signal::Line => match protocol::loudness(&line) {
                protocol::Loudness::Info => tracing::info!(station = %id, stream = name, "{line}"),
                protocol::Loudness::Warn => tracing::warn!(station = %id, stream = name, "{line}"),
                protocol::Loudness::Debug => {
                    tracing::debug!(station = %id, stream = name, "{line}")
                }
            },
        }
    }
}

async fn run_once(
    st: &Arc<Station>,
    shared: &Arc<Shared>,
    instance: &str,
    stopping: &mut Stopping,
) -> Ended {
    let id = st.spec.id.as_str();
    let settings = &shared.settings;
    let args = match render(settings, &shared.storage, &st.spec, instance) {
        Ok(a) => a,
        Err(e) => return Ended::Exited(e),
    };
    st.set_state(State::Starting);
    let cmd = settings.launch().command(&args);
    let mut child = match shared.spawner.spawn(cmd).await {
        Ok(c) => c,
        Err(e) => {
            return Ended::Exited(format!(
                "cannot start {}: {e}",
                settings.gst_launch.display()
            ));
        }
    };
    let pid = child.id().unwrap_or(0);
    {
        let mut s = st.status.lock().unwrap();
        s.pid = Some(pid);
        s.pipeline_instance = Some(instance.to_owned());
        push_capped(&mut s.start_history_unix_ms, unix_ms());
    }
    st.progressed();
    tracing::info!(station = %id, pid, instance, "pipeline started");
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(st.clone(), shared.clone(), out, "out"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(st.clone(), shared.clone(), err, "err"));
    }
    let stall_check = if settings.stall_timeout.is_zero() {
        Duration::from_secs(3600)
    } else {
        (settings.stall_timeout / 4).max(Duration::from_millis(50))
    };
    let ended = loop {
        tokio::select! {
            status = child.wait() => {
                break Ended::Exited(match status {
                    Ok(s) => describe_exit(s),
                    Err(e) => format!("wait failed: {e}"),
                });
            }
            _ = stopping.wait() => break Ended::Shutdown,
            _ = tokio::time::sleep(stall_check) => {
                if !settings.stall_timeout.is_zero()
                    && st.last_progress.lock().unwrap().elapsed() >= settings.stall_timeout
                {
                    tracing::warn!(
                        station = %id,
                        pid,
                        "pipeline stalled: no progress for {:.1}s",
                        settings.stall_timeout.as_secs_f64()
                    );
                    break Ended::Stalled;
                }
            }
        }
    };
    match ended {
        Ended::Shutdown => {
            tracing::info!(
                station = %id,
                pid,
                "stopping pipeline: SIGINT (EOS), SIGKILL after {:.1}s",
                settings.shutdown_grace.as_secs_f64()
            );
            signal_group(pid, Sig::SIGINT);
            match tokio::time::timeout(settings.shutdown_grace, child.wait()).await {
                Ok(status) => {
                    let why = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    tracing::info!(station = %id, pid, "pipeline stopped ({why})");
                }
                Err(_) => {
                    tracing::warn!(station = %id, pid, "pipeline did not stop in time: SIGKILL");
                    signal_group(pid, Sig::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            // Anything the pipeline left in its group goes too.
            signal_group(pid, Sig::SIGKILL);
        }
        Ended::Stalled => {
            signal_group(pid, Sig::SIGKILL);
            let _ = child.wait().await;
        }
        Ended::Exited(_) => signal_group(pid, Sig::SIGKILL),
    }
    ended
}
