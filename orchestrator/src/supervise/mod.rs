//! Supervision of one `gst-launch-1.0 -e -m` child per station.
//!
//! * Start: `pipelines_dir/<pipeline>` is rendered with [`oa_contract::render_pipeline`]
//!   and split with [`oa_contract::pipeline_args`]; [`child`] says how the process is
//!   started (own process group, parent-death signal, `LC_ALL=C`). The child gets only
//!   the orchestrator's variables it needs ([`child::passed_to_child`]: `AWS_*`,
//!   `GST_*`...), plus, per station, the camera's user name and password as
//!   `OA_CAMERA_USER` / `OA_CAMERA_PASSWORD` for `camerasrc` ([`camera`]): no secret is
//!   ever put on the command line, and sources are shown with their user info as `***`.
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

pub mod camera;
pub mod child;
pub mod policy;
pub mod protocol;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal as Sig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::shutdown::{Shutdown, Stopping};
use crate::status::{FrameCounts, State, StationStatus};
use camera::CameraEnv;
use child::{Launch, Spawner, describe_exit, signal_group};
use policy::RestartPolicy;
use protocol::{RepeatFilter, Signal};

/// One station as the supervisor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationSpec {
    pub id: String,
    /// As configured: user info in it is given to `camerasrc` pipelines through the
    /// environment, never on their command line.
    pub source: String,
    /// File name inside the pipelines folder.
    pub pipeline: String,
    pub roi: Option<String>,
    pub idle_timeout_ms: u32,
    /// `reuse-after` of the sink: seconds after which a number seen again is a new order.
    pub reuse_after_s: u32,
    /// A recording played once: a clean end (EOS, exit 0) finishes the station instead of
    /// restarting it, which would store and process every order of the file again.
    pub plays_once: bool,
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
    camera: CameraEnv,
    /// The configuration revision the station was (re)started with (1: at start).
    revision: u64,
    status: Mutex<StationStatus>,
    playing_since: Mutex<Option<Instant>>,
    last_progress: Mutex<Instant>,
    /// Frame counters of the pipeline runs before the current one, and of the current.
    frames: Mutex<(FrameCounts, FrameCounts)>,
}

impl Station {
    fn set_state(&self, state: State) {
        self.status.lock().unwrap().state = state;
    }

    fn progressed(&self) {
        *self.last_progress.lock().unwrap() = Instant::now();
    }

    /// The current pipeline's counters (they start at 0 with every pipeline).
    fn count_frames(&self, now: FrameCounts) {
        let mut f = self.frames.lock().unwrap();
        f.1 = now;
        self.status.lock().unwrap().frames = f.0.plus(now);
    }

    /// A new pipeline starts counting from 0: what the last one counted is kept.
    fn new_run(&self) {
        let mut f = self.frames.lock().unwrap();
        f.0 = f.0.plus(f.1);
        f.1 = FrameCounts::default();
    }
}

/// A station's task and what stops it alone.
struct Running {
    st: Arc<Station>,
    stop: Shutdown,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a reload of the station list did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    pub revision: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Restarted alone with their new settings.
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Runs and watches every station's pipeline; the set can change while they run
/// ([`Supervisor::reload`]).
pub struct Supervisor {
    stations: Mutex<Vec<Running>>,
    shared: Arc<Shared>,
    /// Fired on shutdown: no station starts after it.
    shutdown: Shutdown,
    revision: std::sync::atomic::AtomicU64,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
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

/// How one child of a station is started: its arguments and the variables it gets
/// besides those of [`child::passed_to_child`].
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub args: Vec<String>,
    /// `OA_CAMERA_USER` / `OA_CAMERA_PASSWORD`, when the station has credentials.
    pub env: Vec<(&'static str, String)>,
    /// Said once when the station starts: credentials that a pipeline without
    /// `camerasrc` puts on the command line, or cannot use.
    pub warning: Option<String>,
}

impl std::fmt::Debug for LaunchPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<_> = self.env.iter().map(|(k, _)| (k, "***")).collect();
        f.debug_struct("LaunchPlan")
            .field("args", &self.args)
            .field("env", &env)
            .field("warning", &self.warning)
            .finish()
    }
}

/// Renders the pipeline of `spec`; errors name the file and the problem.
pub fn render(
    settings: &Settings,
    storage: &StorageTarget,
    spec: &StationSpec,
    instance: &str,
) -> Result<Vec<String>, String> {
    render_template(settings, storage, spec, instance).map(|(args, _)| args)
}

/// The template of `spec` filled in, once with `{source}` as given to `camerasrc` (without
/// user info) and, for a pipeline that does not use `camerasrc`, once more with the source
/// as configured; with the source's user info.
fn render_template(
    settings: &Settings,
    storage: &StorageTarget,
    spec: &StationSpec,
    instance: &str,
) -> Result<(Vec<String>, Option<camera::Userinfo>), String> {
    let path = settings.pipelines_dir.join(&spec.pipeline);
    let template = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read pipeline {}: {e}", path.display()))?;
    let (stripped, userinfo) = camera::split_userinfo(&spec.source);
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("station_id", spec.id.clone());
    values.insert("source", stripped);
    values.insert("roi", spec.roi.clone().unwrap_or_default());
    values.insert("idle_timeout_ms", spec.idle_timeout_ms.to_string());
    values.insert("reuse_after_s", spec.reuse_after_s.to_string());
    values.insert("endpoint", storage.endpoint.clone());
    values.insert("bucket", storage.bucket.clone());
    values.insert("prefix", storage.prefix.clone());
    values.insert("pipeline_instance", instance.to_owned());
    let fill = |values: &BTreeMap<&str, String>| {
        oa_contract::render_pipeline(&template, values)
            .map(|rendered| oa_contract::pipeline_args(&rendered))
            .map_err(|e| match e {
                oa_contract::TemplateError::UnsafeValue { name, .. } if name == "source" => {
                    format!(
                        "pipeline {}: source {} contains a quote, backslash, '!' or newline \
                         and cannot be placed in a pipeline",
                        path.display(),
                        camera::redact_source(&spec.source)
                    )
                }
                e => format!("pipeline {}: {e}", path.display()),
            })
    };
    let args = fill(&values)?;
    if userinfo.is_none() || camera::uses_camerasrc(&args) {
        return Ok((args, userinfo));
    }
    // An older template (`rtspsrc location="{source}"`) keeps working as it did.
    values.insert("source", spec.source.clone());
    Ok((fill(&values)?, userinfo))
}

/// The element's own default, which a template without `reuse-after` runs with.
const SINK_REUSE_AFTER_S: u32 = 1_800;

/// A template of the user's own that leaves `reuse-after` out runs the sink with its
/// default: say so when the station asks for something else.
fn reuse_after_warning(spec: &StationSpec, args: &[String]) -> Option<String> {
    let sink = args.iter().any(|a| a == "minioframesink");
    let set = args.iter().any(|a| a.starts_with("reuse-after="));
    (sink && !set && spec.reuse_after_s != SINK_REUSE_AFTER_S).then(|| {
        format!(
            "pipeline {} does not set reuse-after on minioframesink, so reuse_after_s = {} is \
             not applied (the element's {SINK_REUSE_AFTER_S} s is): add \
             reuse-after={{reuse_after_s}} to it",
            spec.pipeline, spec.reuse_after_s
        )
    })
}

/// How the child of `spec` is started now: its arguments, and its camera credentials
/// read from the source and the orchestrator's environment.
pub fn plan(
    settings: &Settings,
    storage: &StorageTarget,
    spec: &StationSpec,
    camera: &CameraEnv,
    instance: &str,
) -> Result<LaunchPlan, String> {
    let (args, userinfo) = render_template(settings, storage, spec, instance)?;
    let camera_warning = if camera::uses_camerasrc(&args) {
        None
    } else {
        camera::legacy_template_warning(&spec.source, &spec.pipeline, userinfo.is_some(), camera)
    };
    let warnings: Vec<String> = camera_warning
        .into_iter()
        .chain(reuse_after_warning(spec, &args))
        .collect();
    let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    let env = camera::child_env(userinfo.as_ref(), camera)?;
    Ok(LaunchPlan { args, env, warning })
}

enum Ended {
    /// `clean`: exit code 0, which gst-launch gives only after EOS.
    Exited(String, bool),
    Stalled,
    Shutdown,
}

impl Supervisor {
    /// Checks every station's pipeline renders, then starts them all; camera
    /// credentials come only from the user info of each source.
    pub fn start(
        settings: Settings,
        storage: StorageTarget,
        specs: Vec<StationSpec>,
    ) -> Result<Arc<Supervisor>, String> {
        let stations = specs
            .into_iter()
            .map(|spec| (spec, CameraEnv::default()))
            .collect();
        Supervisor::start_with_cameras(settings, storage, stations)
    }

    /// [`Supervisor::start`] with, for each station, the orchestrator's variables its
    /// camera's user name and password are read from.
    pub fn start_with_cameras(
        settings: Settings,
        storage: StorageTarget,
        stations: Vec<(StationSpec, CameraEnv)>,
    ) -> Result<Arc<Supervisor>, String> {
        for (spec, camera) in &stations {
            let plan = plan(&settings, &storage, spec, camera, "check")
                .map_err(|e| format!("station {}: {e}", spec.id))?;
            if let Some(w) = plan.warning {
                tracing::warn!(station = %spec.id, "{w}");
            }
        }
        let shared = Arc::new(Shared {
            settings,
            storage,
            spawner: Spawner::new(),
            hook: Arc::new(Mutex::new(None)),
            repeats: RepeatFilter::default(),
        });
        let running = stations
            .into_iter()
            .map(|(spec, camera)| launch_station(spec, camera, 1, &shared))
            .collect();
        Ok(Arc::new(Supervisor {
            stations: Mutex::new(running),
            shared,
            shutdown: Shutdown::new(),
            revision: std::sync::atomic::AtomicU64::new(1),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// Makes `stations` the running set: stations added are started, stations removed are
    /// stopped as on shutdown (SIGINT: EOS, their open order completed), stations whose
    /// settings changed are stopped and started again with them; every other station's
    /// pipeline runs on untouched. A station that does not render refuses the whole set
    /// (nothing changes); the error names it.
    pub async fn reload(
        &self,
        stations: Vec<(StationSpec, CameraEnv)>,
    ) -> Result<Reloaded, String> {
        let _one = self.reloading.lock().await;
        for (spec, camera) in &stations {
            plan(
                &self.shared.settings,
                &self.shared.storage,
                spec,
                camera,
                "check",
            )
            .map_err(|e| format!("station {}: {e}", spec.id))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some((dup, _)) = stations.iter().find(|(s, _)| !seen.insert(s.id.clone())) {
            return Err(format!("station {}: appears twice", dup.id));
        }
        if self.shutdown.listener().is_stopping() {
            return Err("the orchestrator is stopping".into());
        }
        let same = {
            let running = self.stations.lock().unwrap();
            running.len() == stations.len()
                && running
                    .iter()
                    .zip(&stations)
                    .all(|(r, (s, c))| r.st.spec == *s && r.st.camera == *c)
        };
        if same {
            // Nothing to do: the revision stays.
            return Ok(Reloaded {
                revision: self.revision.load(std::sync::atomic::Ordering::SeqCst),
                unchanged: stations.into_iter().map(|(s, _)| s.id).collect(),
                ..Reloaded::default()
            });
        }
        let revision = self
            .revision
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let mut out = Reloaded {
            revision,
            ..Reloaded::default()
        };
        // Those that stop: removed, or changed.
        let stopping: Vec<(Arc<Station>, Option<tokio::task::JoinHandle<()>>)> = {
            let mut running = self.stations.lock().unwrap();
            running
                .iter_mut()
                .filter(|r| {
                    !stations
                        .iter()
                        .any(|(s, c)| *s == r.st.spec && *c == r.st.camera)
                })
                .map(|r| {
                    r.stop.trigger();
                    (r.st.clone(), r.task.take())
                })
                .collect()
        };
        for (st, task) in stopping {
            if let Some(task) = task {
                let _ = task.await;
            }
            if stations.iter().any(|(s, _)| s.id == st.spec.id) {
                out.changed.push(st.spec.id.clone());
            } else {
                tracing::info!(station = %st.spec.id, revision, "station removed");
                out.removed.push(st.spec.id.clone());
            }
        }
        let mut running = self.stations.lock().unwrap();
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        for (spec, camera) in stations {
            let kept = old
                .iter()
                .position(|r| r.task.is_some() && r.st.spec == spec && r.st.camera == camera);
            match kept {
                Some(i) => {
                    out.unchanged.push(spec.id.clone());
                    running.push(old.swap_remove(i));
                }
                None => {
                    if !out.changed.contains(&spec.id) {
                        out.added.push(spec.id.clone());
                    }
                    tracing::info!(station = %spec.id, revision, "station (re)started with its new settings");
                    running.push(launch_station(spec, camera, revision, &self.shared));
                }
            }
        }
        Ok(out)
    }

    /// Every station's status, in configuration order.
    pub fn statuses(&self) -> Vec<StationStatus> {
        self.stations
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let st = &r.st;
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
        for r in self
            .stations
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.st.spec.id == station)
        {
            r.st.progressed();
        }
    }

    /// SIGINT to every pipeline group, SIGKILL after the grace period; returns when every
    /// child has exited.
    pub async fn shutdown(&self) {
        self.shutdown.trigger();
        // A reload in progress ends first, so that no station starts after this.
        let _one = self.reloading.lock().await;
        let tasks: Vec<tokio::task::JoinHandle<()>> = self
            .stations
            .lock()
            .unwrap()
            .iter_mut()
            .filter_map(|r| {
                r.stop.trigger();
                r.task.take()
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// A station's task, started.
fn launch_station(
    spec: StationSpec,
    camera: CameraEnv,
    revision: u64,
    shared: &Arc<Shared>,
) -> Running {
    let mut status = StationStatus::new(spec.id.clone());
    status.config_revision = revision;
    status.configured_unix_ms = unix_ms();
    let st = Arc::new(Station {
        status: Mutex::new(status),
        spec,
        camera,
        revision,
        playing_since: Mutex::new(None),
        last_progress: Mutex::new(Instant::now()),
        frames: Mutex::new(Default::default()),
    });
    let stop = Shutdown::new();
    let task = tokio::spawn(run_station(st.clone(), shared.clone(), stop.listener()));
    Running {
        st,
        stop,
        task: Some(task),
    }
}

async fn run_station(st: Arc<Station>, shared: Arc<Shared>, mut stopping: Stopping) {
    let id = st.spec.id.clone();
    let policy = shared.settings.policy();
    let mut failures: u32 = 0;
    let mut start_n: u32 = 0;
    while !stopping.is_stopping() {
        start_n += 1;
        // Unique per pipeline run of the process: a station restarted by a reload counts
        // its runs again.
        let instance = match st.revision {
            1 => format!("{id}-{}-{start_n}", std::process::id()),
            r => format!("{id}-{}-r{r}-{start_n}", std::process::id()),
        };
        let ended = run_once(&st, &shared, &instance, &mut stopping).await;
        let stable = st
            .playing_since
            .lock()
            .unwrap()
            .take()
            .is_some_and(|t| t.elapsed() >= policy.stable_after);
        let why = match ended {
            Ended::Shutdown => break,
            Ended::Exited(why, true) if st.spec.plays_once => {
                let mut s = st.status.lock().unwrap();
                s.pid = None;
                s.state = State::Finished;
                s.last_exit = Some(why);
                tracing::info!(
                    station = %id,
                    source = %camera::redact_source(&st.spec.source),
                    "the recording played to its end: station finished, not restarted \
                     (set loop = true on the station to replay it)"
                );
                return;
            }
            Ended::Exited(why, _) => why,
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

/// The next line of `r` (lossily decoded), `None` at its end or on a read error.
pub(crate) async fn next_line(
    r: &mut (impl AsyncBufReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> Option<String> {
    buf.clear();
    match r.read_until(b'\n', buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            let end = buf.len() - usize::from(buf.ends_with(b"\n"));
            let end = end - usize::from(buf[..end].ends_with(b"\r"));
            Some(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    }
}

/// Reads one of the child's output streams until it closes.
async fn relay(
    st: Arc<Station>,
    shared: Arc<Shared>,
    stream: impl AsyncRead + Unpin,
    name: &'static str,
) {
    let id = st.spec.id.as_str();
    let mut lines = BufReader::new(stream);
    let mut sites = protocol::SiteThrottle::default();
    let mut buf = Vec::new();
    // Bytes, not UTF-8 lines: one stray byte must not stop the reading (the pipe would
    // fill and the pipeline die of SIGPIPE).
    while let Some(line) = next_line(&mut lines, &mut buf).await {
        // An older template puts the camera's user info in rtspsrc's location, which its
        // errors quote.
        let line = camera::redact_urls(&line);
        match protocol::classify(&line) {
            Signal::Playing => {
                st.progressed();
                // A line read late (the run already ended: finished, backoff, stopped)
                // must not bring the station back.
                let started = {
                    let mut s = st.status.lock().unwrap();
                    let starting = s.state == State::Starting;
                    if starting {
                        s.state = State::Running;
                    }
                    starting
                };
                if started {
                    *st.playing_since.lock().unwrap() = Some(Instant::now());
                    tracing::info!(station = %id, "pipeline is playing");
                }
            }
            Signal::Progress(counts) => {
                st.progressed();
                st.count_frames(counts);
            }
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
            Signal::Line => {
                let more = match sites.check(&line, Instant::now()) {
                    protocol::Relay::Plain => String::new(),
                    protocol::Relay::Report(r) => r.to_string(),
                    protocol::Relay::Quiet => {
                        tracing::debug!(station = %id, stream = name, "{line}");
                        continue;
                    }
                };
                match protocol::loudness(&line) {
                    protocol::Loudness::Info => {
                        tracing::info!(station = %id, stream = name, "{line}{more}")
                    }
                    protocol::Loudness::Warn => {
                        tracing::warn!(station = %id, stream = name, "{line}{more}")
                    }
                    protocol::Loudness::Debug => {
                        tracing::debug!(station = %id, stream = name, "{line}{more}")
                    }
                }
            }
        }
    }
    for (site, n) in sites.finish(Instant::now()) {
        tracing::info!(
            station = %id,
            stream = name,
            "{n} more line(s) from {site} since its last one here were logged at debug level"
        );
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
    let plan = match plan(settings, &shared.storage, &st.spec, &st.camera, instance) {
        Ok(p) => p,
        Err(e) => return Ended::Exited(e, false),
    };
    st.set_state(State::Starting);
    let cmd = settings.launch().command_with_env(&plan.args, &plan.env);
    let mut child = match shared.spawner.spawn(cmd).await {
        Ok(c) => c,
        Err(e) => {
            return Ended::Exited(
                format!("cannot start {}: {e}", settings.gst_launch.display()),
                false,
            );
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
    st.new_run();
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
                break match status {
                    Ok(s) => Ended::Exited(describe_exit(s), s.success()),
                    Err(e) => Ended::Exited(format!("wait failed: {e}"), false),
                };
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
        Ended::Exited(..) => signal_group(pid, Sig::SIGKILL),
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stray_byte_does_not_stop_the_reading_of_a_childs_output() {
        let mut r = BufReader::new(&b"a\xffb\r\nsecond\nlast"[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf).await {
            lines.push(l);
        }
        assert_eq!(lines, ["a\u{fffd}b", "second", "last"]);
    }

    #[test]
    fn frame_counts_add_up_over_pipeline_runs() {
        let st = Station {
            spec: spec("rtsp://cam/x", ""),
            camera: CameraEnv::default(),
            revision: 1,
            status: Mutex::new(StationStatus::new("station_1")),
            playing_since: Mutex::new(None),
            last_progress: Mutex::new(Instant::now()),
            frames: Mutex::new(Default::default()),
        };
        let counts = |received, stored, dropped| FrameCounts {
            received,
            stored,
            dropped,
        };
        st.new_run();
        st.count_frames(counts(5, 4, 1));
        st.count_frames(counts(9, 7, 2));
        assert_eq!(st.status.lock().unwrap().frames, counts(9, 7, 2));
        // The next pipeline reports from 0 again; the totals keep the first run's.
        st.new_run();
        st.count_frames(counts(3, 3, 0));
        assert_eq!(st.status.lock().unwrap().frames, counts(12, 10, 2));
    }

    fn settings(pipelines_dir: PathBuf) -> Settings {
        Settings {
            gst_launch: "gst-launch-1.0".into(),
            pipelines_dir,
            plugin_path: None,
            backoff: Settings::default_backoff(Duration::from_secs(1)),
            stable_after: Duration::from_secs(30),
            max_failed_restarts: 5,
            stall_timeout: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    fn spec(source: &str, pipeline: &str) -> StationSpec {
        StationSpec {
            id: "station_1".into(),
            source: source.into(),
            pipeline: pipeline.into(),
            roi: None,
            idle_timeout_ms: 10_000,
            reuse_after_s: 1_800,
            plays_once: false,
        }
    }

    fn storage() -> StorageTarget {
        StorageTarget {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "frames".into(),
            prefix: String::new(),
        }
    }

    fn env_of(cmd: &tokio::process::Command, name: &str) -> Option<String> {
        cmd.as_std()
            .get_envs()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn credentials_in_the_source_reach_camerasrc_through_the_environment_only() {
        let dir = PathBuf::from(crate::config::DEFAULT_PIPELINES_DIR);
        for pipeline in ["rtsp-camera.pipeline", "rtsp-camera-keyframes.pipeline"] {
            let station = spec("rtsp://u:p%40ss@cam.local:554/x", pipeline);
            let settings = settings(dir.clone());
            let launch = plan(
                &settings,
                &storage(),
                &station,
                &CameraEnv::default(),
                "i-1",
            )
            .unwrap();
            assert_eq!(launch.warning, None, "{pipeline}");
            let cmd = settings
                .launch()
                .command_with_env(&launch.args, &launch.env);
            let args: Vec<String> = cmd
                .as_std()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert!(
                args.iter().any(|a| a == "camerasrc"),
                "{pipeline}: {args:?}"
            );
            assert!(
                args.iter().any(|a| a == "location=rtsp://cam.local:554/x"),
                "{pipeline}: {args:?}"
            );
            for a in &args {
                assert!(
                    !a.contains("u:p") && !a.contains("p%40ss") && !a.contains('@'),
                    "{a}"
                );
            }
            assert_eq!(env_of(&cmd, camera::USER_VAR).as_deref(), Some("u"));
            assert_eq!(env_of(&cmd, camera::PASSWORD_VAR).as_deref(), Some("p@ss"));
            assert!(!format!("{launch:?}").contains("p@ss"));
        }
    }

    #[test]
    fn named_variables_of_the_orchestrator_become_the_childs_camera_variables() {
        // Names only this test uses; nothing else reads them.
        let (user_var, pw_var) = ("OA_TEST_SUPERVISE_CAM_USER", "OA_TEST_SUPERVISE_CAM_PW");
        // SAFETY: these variables are read by this test alone.
        unsafe {
            std::env::set_var(user_var, "viewer");
            std::env::set_var(pw_var, "from-env");
        }
        let settings = settings(PathBuf::from(crate::config::DEFAULT_PIPELINES_DIR));
        let camera = CameraEnv {
            user_env: Some(user_var.into()),
            password_env: Some(pw_var.into()),
        };
        let station = spec("rtsp://cam.local/x", "rtsp-camera.pipeline");
        let launch = plan(&settings, &storage(), &station, &camera, "i-1").unwrap();
        let cmd = settings
            .launch()
            .command_with_env(&launch.args, &launch.env);
        assert_eq!(env_of(&cmd, camera::USER_VAR).as_deref(), Some("viewer"));
        assert_eq!(
            env_of(&cmd, camera::PASSWORD_VAR).as_deref(),
            Some("from-env")
        );
        assert!(
            cmd.as_std()
                .get_args()
                .all(|a| !a.to_string_lossy().contains("from-env"))
        );
        // Without credentials the child gets no camera variable at all.
        let launch = plan(
            &settings,
            &storage(),
            &station,
            &CameraEnv::default(),
            "i-1",
        )
        .unwrap();
        assert!(launch.env.is_empty());
    }

    #[test]
    fn a_template_without_reuse_after_is_warned_about_when_the_station_asks_for_another() {
        let dir = std::env::temp_dir().join(format!("oa-supervise-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("own.pipeline"),
            "videotestsrc ! jpegenc ! minioframesink bucket={bucket}\n",
        )
        .unwrap();
        let shipped = PathBuf::from(crate::config::DEFAULT_PIPELINES_DIR);
        let warning = |dir: &PathBuf, pipeline: &str, reuse_after_s: u32| {
            let station = StationSpec {
                reuse_after_s,
                ..spec("rtsp://cam/x", pipeline)
            };
            plan(
                &settings(dir.clone()),
                &storage(),
                &station,
                &CameraEnv::default(),
                "i",
            )
            .unwrap()
            .warning
        };
        let w = warning(&dir, "own.pipeline", 60).expect("a warning");
        assert!(
            w.contains("reuse_after_s = 60") && w.contains("own.pipeline"),
            "{w}"
        );
        assert_eq!(
            warning(&dir, "own.pipeline", 1_800),
            None,
            "the element's default"
        );
        assert_eq!(
            warning(&shipped, "rtsp-camera.pipeline", 60),
            None,
            "sets it"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_rtspsrc_template_keeps_the_full_source_and_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("oa-supervise-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("old.pipeline"),
            "rtspsrc location=\"{source}\" ! decodebin ! fakesink name={station_id}\n",
        )
        .unwrap();
        let settings = settings(dir.clone());
        let station = spec("rtsp://u:pw@cam/x", "old.pipeline");
        let launch = plan(
            &settings,
            &storage(),
            &station,
            &CameraEnv::default(),
            "i-1",
        )
        .unwrap();
        assert!(
            launch
                .args
                .iter()
                .any(|a| a == "location=rtsp://u:pw@cam/x")
        );
        let warning = launch.warning.unwrap();
        assert!(warning.contains("camerasrc") && warning.contains("rtsp://***@cam/x"));
        assert!(!warning.contains("u:pw"));
        // A source without user info: nothing to warn about.
        let launch = plan(
            &settings,
            &storage(),
            &spec("rtsp://cam/x", "old.pipeline"),
            &CameraEnv::default(),
            "i-1",
        )
        .unwrap();
        assert_eq!(launch.warning, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
