//! Supervision of one `gst-launch-1.0 -e -m` child per station.
//!
//! * Start: `pipelines_dir/<pipeline>` is rendered with [`oa_contract::render_pipeline`]
//!   and split with [`oa_contract::pipeline_args`]; the child runs in its own process group
//!   (`setpgid`) with `PR_SET_PDEATHSIG = SIGKILL`, so a SIGKILLed orchestrator leaves no
//!   child. Children are spawned from one long-lived thread because the parent-death
//!   signal follows the *thread* that forked. The environment is inherited (`AWS_*`),
//!   `GST_PLUGIN_PATH` is set from `plugin_path`; no secret is ever put on the command line.
//! * Readiness is observed: a station is `starting` until gst-launch prints
//!   `Setting pipeline to PLAYING`, then `running` (gst-launch's stdout is line-buffered
//!   through `/usr/bin/stdbuf -oL` where present, so lines arrive as they are printed).
//! * Progress: every line gst-launch prints counts: with `-m` the bus messages of the
//!   elements (`ocr-read`, `order-complete`, `order-stored`), and, unless `GST_DEBUG` is
//!   set in the orchestrator's environment, a per-frame heartbeat: the children get
//!   `GST_DEBUG=2,minioframesink:7`, so minioframesink logs every frame it uploads or drops
//!   (those lines are counted, not forwarded to the log). Every marker of the station
//!   found by the consumer ([`Supervisor::note_progress`]) counts too. A station that shows
//!   no progress for `stall_timeout` while running is *stalled* and restarted
//!   (`stall_timeout` zero disables this; set it above the longest quiet period).
//! * Restart with backoff `backoff[min(n, len-1)]` (2,4,8,16,32,60 s by default); the
//!   counter `n` of consecutive failures is reset once a child ran `stable_after` after
//!   reaching PLAYING. After `max_failed_restarts` consecutive failed restarts the station
//!   is `failed`; the others keep running.
//! * Shutdown: SIGINT to each child's process group (gst-launch `-e` turns it into EOS and
//!   the open order is flushed), `shutdown_grace` later SIGKILL to the group.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::metrics::log;

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
    /// The default backoff sequence of DESIGN.md scaled by `unit` (one second in production).
    pub fn default_backoff(unit: Duration) -> Vec<Duration> {
        [2u32, 4, 8, 16, 32, 60].iter().map(|n| unit * *n).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    Backoff,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Failed => "failed",
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

/// Called with (station, order) for every `order-stored` bus message of a pipeline.
pub type MarkerCallback = Box<dyn Fn(&str, &str) + Send + Sync>;
type MarkerHook = Arc<Mutex<Option<MarkerCallback>>>;

struct Station {
    spec: StationSpec,
    hook: MarkerHook,
    status: Mutex<StationStatus>,
    playing_since: Mutex<Option<Instant>>,
    last_progress: Mutex<Instant>,
}

/// Runs and watches every station's pipeline.
pub struct Supervisor {
    stations: Vec<Arc<Station>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    hook: MarkerHook,
}

/// `GST_DEBUG` set for the children when the orchestrator's environment has none.
pub const HEARTBEAT_DEBUG: &str = "2,minioframesink:7";

/// A per-frame log line of minioframesink: progress, not worth a log line of ours.
pub fn is_heartbeat(line: &str) -> bool {
    line.contains("minioframesink")
        && (line.contains("Uploading ") || line.contains("Dropping a frame"))
}

/// The order of an `order-stored` bus message line printed by `gst-launch-1.0 -m`.
pub fn stored_order(line: &str) -> Option<&str> {
    if !line.contains("order-stored") {
        return None;
    }
    let rest = &line[line.find("order-id=")? + "order-id=".len()..];
    let rest = rest.strip_prefix("(string)").unwrap_or(rest);
    let rest = rest.trim_start_matches('"');
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    oa_contract::is_valid_id(&rest[..end]).then_some(&rest[..end])
}

/// Resolves once `rx` holds `true` or its sender is gone.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.is_ok();
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

type SpawnRequest = (
    tokio::process::Command,
    std::sync::mpsc::SyncSender<std::io::Result<tokio::process::Child>>,
);

/// Spawns children from one thread that lives as long as the supervisor: the
/// parent-death signal is delivered when the *thread* that forked the child ends, and
/// tokio worker or blocking threads may come and go.
type Spawner = std::sync::mpsc::Sender<SpawnRequest>;

fn spawner() -> Spawner {
    let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("oa-spawner".into())
        .spawn(move || {
            let _enter = handle.enter();
            while let Ok((mut cmd, reply)) = rx.recv() {
                let _ = reply.send(cmd.spawn());
            }
        })
        .expect("spawner thread starts");
    tx
}

async fn spawn_child(
    spawner: &Spawner,
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit) in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.kill_on_drop(true);
    let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    tokio::task::spawn_blocking(move || reply_rx.recv())
        .await
        .map_err(std::io::Error::other)?
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the process group we created (negative pid).
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
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
        let (shutdown, _) = watch::channel(false);
        let hook: MarkerHook = Arc::new(Mutex::new(None));
        let sup = Arc::new(Supervisor {
            stations: specs
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
                        hook: hook.clone(),
                        playing_since: Mutex::new(None),
                        last_progress: Mutex::new(Instant::now()),
                    })
                })
                .collect(),
            shutdown,
            tasks: Mutex::new(vec![]),
            hook,
        });
        let settings = Arc::new(settings);
        let storage = Arc::new(storage);
        let spawn_thread = spawner();
        let mut tasks = sup.tasks.lock().unwrap();
        for st in &sup.stations {
            let rx = sup.shutdown.subscribe();
            tasks.push(tokio::spawn(run_station(
                st.clone(),
                settings.clone(),
                storage.clone(),
                spawn_thread.clone(),
                rx,
            )));
        }
        drop(tasks);
        Ok(sup)
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
        *self.hook.lock().unwrap() = Some(f);
    }

    /// Records a sign of progress of `station` seen elsewhere (a new marker).
    pub fn note_progress(&self, station: &str) {
        for st in &self.stations {
            if st.spec.id == station {
                *st.last_progress.lock().unwrap() = Instant::now();
            }
        }
    }

    /// SIGINT to every pipeline group, SIGKILL after the grace period; returns when every
    /// child has exited.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn set_state(st: &Station, state: State) {
    st.status.lock().unwrap().state = state;
}

async fn run_station(
    st: Arc<Station>,
    settings: Arc<Settings>,
    storage: Arc<StorageTarget>,
    spawner: Spawner,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = st.spec.id.clone();
    let mut failures: u32 = 0;
    let mut start_n: u32 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        start_n += 1;
        let instance = format!("{id}-{}-{start_n}", std::process::id());
        let ended = run_once(&st, &settings, &storage, &spawner, &instance, &mut shutdown).await;
        let stable = st
            .playing_since
            .lock()
            .unwrap()
            .take()
            .is_some_and(|t| t.elapsed() >= settings.stable_after);
        let why = match ended {
            Ended::Shutdown => break,
            Ended::Exited(why) => why,
            Ended::Stalled => "stalled".to_owned(),
        };
        if stable {
            failures = 0;
        }
        {
            let mut s = st.status.lock().unwrap();
            s.pid = None;
            s.last_exit = Some(why.clone());
        }
        if failures >= settings.max_failed_restarts {
            set_state(&st, State::Failed);
            log(format_args!(
                "{id} pipeline failed: {failures} consecutive restarts failed, last: {why}; \
                 station marked failed"
            ));
            break;
        }
        let delay = settings
            .backoff
            .get(failures as usize)
            .or(settings.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        failures += 1;
        {
            let mut s = st.status.lock().unwrap();
            s.state = State::Backoff;
            s.restarts += 1;
            s.consecutive_failures = failures;
            push_capped(&mut s.backoff_history_ms, delay.as_millis() as u64);
        }
        log(format_args!(
            "{id} pipeline ended ({why}); restart {failures} in {:.1}s",
            delay.as_secs_f64()
        ));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    let mut s = st.status.lock().unwrap();
    if s.state != State::Failed {
        s.state = State::Stopped;
    }
    s.pid = None;
}

async fn run_once(
    st: &Arc<Station>,
    settings: &Settings,
    storage: &StorageTarget,
    spawner: &Spawner,
    instance: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let id = st.spec.id.clone();
    let args = match render(settings, storage, &st.spec, instance) {
        Ok(a) => a,
        Err(e) => return Ended::Exited(e),
    };
    // gst-launch prints with stdio, fully buffered on a pipe: line-buffer it through
    // coreutils' stdbuf (an exec, same PID) so readiness and progress are seen live.
    let stdbuf = std::path::Path::new("/usr/bin/stdbuf");
    let mut cmd = if stdbuf.exists() {
        let mut c = tokio::process::Command::new(stdbuf);
        c.arg("-oL").arg(&settings.gst_launch);
        c
    } else {
        tokio::process::Command::new(&settings.gst_launch)
    };
    cmd.arg("-e")
        .arg("-m")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = &settings.plugin_path {
        cmd.env("GST_PLUGIN_PATH", p);
    }
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // glibc's default of 8 malloc arenas per core keeps memory freed by one streaming
        // thread away from the others; 2 arenas cut a pipeline's peak RSS by ~10 MiB.
        cmd.env("MALLOC_ARENA_MAX", "2");
    }
    if std::env::var_os("GST_DEBUG").is_none() {
        // A per-frame heartbeat for stall detection: minioframesink logs every frame it
        // uploads (trace) or drops for want of an order (debug).
        cmd.env("GST_DEBUG", HEARTBEAT_DEBUG)
            .env("GST_DEBUG_NO_COLOR", "1");
    }
    set_state(st, State::Starting);
    let mut child = match spawn_child(spawner, cmd).await {
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
    *st.last_progress.lock().unwrap() = Instant::now();
    log(format_args!(
        "{id} pipeline started pid={pid} instance={instance}"
    ));
    for (stream, name) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            "out",
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            "err",
        ),
    ] {
        let Some(stream) = stream else { continue };
        let st = st.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                *st.last_progress.lock().unwrap() = Instant::now();
                if is_heartbeat(&line) {
                    continue;
                }
                if line.contains("Setting pipeline to PLAYING") {
                    *st.playing_since.lock().unwrap() = Some(Instant::now());
                    set_state(&st, State::Running);
                }
                log(format_args!("{} [{name}] {line}", st.spec.id));
                if let Some(order) = stored_order(&line)
                    && let Some(f) = st.hook.lock().unwrap().as_ref()
                {
                    f(&st.spec.id, order);
                }
            }
        });
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
            _ = stopped(shutdown) => break Ended::Shutdown,
            _ = tokio::time::sleep(stall_check) => {
                if !settings.stall_timeout.is_zero()
                    && st.last_progress.lock().unwrap().elapsed() >= settings.stall_timeout
                {
                    log(format_args!(
                        "{id} pipeline pid={pid} stalled: no progress for {:.1}s",
                        settings.stall_timeout.as_secs_f64()
                    ));
                    break Ended::Stalled;
                }
            }
        }
    };
    match ended {
        Ended::Shutdown => {
            log(format_args!(
                "{id} stopping pipeline pid={pid}: SIGINT (EOS), SIGKILL after {:.1}s",
                settings.shutdown_grace.as_secs_f64()
            ));
            signal_group(pid, libc::SIGINT);
            match tokio::time::timeout(settings.shutdown_grace, child.wait()).await {
                Ok(status) => {
                    let why = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    log(format_args!("{id} pipeline pid={pid} stopped ({why})"));
                }
                Err(_) => {
                    log(format_args!(
                        "{id} pipeline pid={pid} did not stop in time: SIGKILL"
                    ));
                    signal_group(pid, libc::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            // Anything the pipeline left in its group goes too.
            signal_group(pid, libc::SIGKILL);
        }
        Ended::Stalled => {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
        }
        Ended::Exited(_) => signal_group(pid, libc::SIGKILL),
    }
    ended
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_order_stored_lines() {
        let line = "Got message #57 from element \"minioframesink0\" (element): order-stored, \
                    station-id=(string)station_1, order-id=(string)384, frame-count=(uint)8;";
        assert_eq!(super::stored_order(line), Some("384"));
        assert_eq!(
            super::stored_order("order-complete, order-id=(string)384"),
            None
        );
    }
}
