//! `orchestrator check-video`: one recording played once, as fast as decoding and OCR
//! allow, through the station's own pipeline, the embedded S3 server and the configured
//! recogniser; a report of every order in it.
//!
//! The shipped `recorded-file.pipeline` is rendered as for a station whose source is the
//! file, with the sink's clock sync turned off ([`unsynced`]): frames go as fast as they
//! are decoded, and `eosmarker` measures an order's idle time on the frames' own
//! timestamps, so orders end where they end in the recording. The run is over when
//! `gst-launch-1.0` exits after EOS and every order it stored has its result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::BufReader;

use crate::consume::{self, Consumer, ConsumerDeps};
use crate::metrics::Metrics;
use crate::orders::{Inventory, Orders};
use crate::recognize::Recognizer;
use crate::result::{Item, OrderResult, OrderStatus};
use crate::store::{Layout, Store};
use crate::supervise::camera::CameraEnv;
use crate::supervise::child::Launch;
use crate::supervise::protocol::{self, Signal};
use crate::supervise::{self, StationSpec, StorageTarget};

/// The bucket of a check's own S3 server.
pub const BUCKET: &str = "frames";

/// What one check needs.
pub struct Check {
    pub file: PathBuf,
    /// The station whose settings (ROI, idle timeout) are used; its source is `file`.
    pub station: StationSpec,
    pub supervision: supervise::Settings,
    pub recognizer: Arc<dyn Recognizer>,
    pub orders: Orders,
    pub inventory: Arc<Inventory>,
    pub detector: Option<Arc<crate::detector::Detector>>,
    pub frames_per_order: usize,
    /// Where the S3 server keeps frames, markers and results; removed after unless kept.
    pub root: PathBuf,
    pub keep: bool,
    /// A progress line on stderr (a terminal).
    pub progress: bool,
    /// Told the seconds of video read and the orders stored as they grow.
    pub on_progress: Option<OnProgress>,
    /// How long one order's result may take (the recogniser's timeouts and retries).
    pub result_wait: Duration,
}

/// Called with (seconds of video read, orders stored).
pub type OnProgress = Arc<dyn Fn(u64, usize) + Send + Sync>;

/// What every check of one configuration shares: a [`Check`] is made of it per file.
#[derive(Clone)]
pub struct Template {
    /// The stations whose settings a check may use, the first by default; their source is
    /// replaced by the file.
    pub stations: Vec<StationSpec>,
    pub supervision: supervise::Settings,
    pub recognizer: Arc<dyn Recognizer>,
    pub orders: Orders,
    pub inventory: Arc<Inventory>,
    pub detector: Option<Arc<crate::detector::Detector>>,
    pub frames_per_order: usize,
    pub result_wait: Duration,
}

impl Template {
    /// The check of `file` with the settings of `station` (default: the first); `roi`
    /// overrides the station's (`Some(None)`: the whole frame).
    pub fn check(
        &self,
        file: PathBuf,
        station: Option<&str>,
        roi: Option<Option<String>>,
        root: PathBuf,
        keep: bool,
    ) -> Result<Check, String> {
        let spec = match station {
            Some(id) => self.stations.iter().find(|s| s.id == id),
            None => self.stations.first(),
        }
        .ok_or_else(|| {
            let ids: Vec<&str> = self.stations.iter().map(|s| s.id.as_str()).collect();
            format!(
                "station {}: not in the configuration (it has {})",
                station.unwrap_or(""),
                ids.join(", ")
            )
        })?;
        let file = std::path::absolute(&file).unwrap_or(file);
        let station = StationSpec {
            id: spec.id.clone(),
            source: file.display().to_string(),
            pipeline: crate::config::DEFAULT_FILE_PIPELINE.to_owned(),
            roi: roi.unwrap_or_else(|| spec.roi.clone()),
            idle_timeout_ms: spec.idle_timeout_ms,
            reuse_after_s: spec.reuse_after_s,
            plays_once: true,
        };
        Ok(Check {
            file,
            station,
            supervision: self.supervision.clone(),
            recognizer: self.recognizer.clone(),
            orders: self.orders.clone(),
            inventory: self.inventory.clone(),
            detector: self.detector.clone(),
            frames_per_order: self.frames_per_order,
            root,
            keep,
            progress: false,
            on_progress: None,
            result_wait: self.result_wait,
        })
    }
}

/// Every order of one recording.
#[derive(Debug)]
pub struct Report {
    pub file: PathBuf,
    pub station: String,
    /// Frames the pipeline read at 1 frame/s: the recording's length in seconds.
    pub frames: u64,
    pub orders: Vec<OrderResult>,
    pub elapsed: Duration,
}

/// Why a check gave no report; each has its exit code.
#[derive(Debug)]
pub enum CheckError {
    /// The recording could not be played (missing, corrupt, not a video): exit 1.
    Unplayable(String),
    /// It played, and no order slip was read in it: exit 3.
    NoOrder(String),
    /// Anything else on the way (the store, a result that never came): exit 1.
    Failed(String),
}

impl CheckError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Unplayable(_) | CheckError::Failed(_) => 1,
            CheckError::NoOrder(_) => 3,
        }
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Unplayable(m) | CheckError::NoOrder(m) | CheckError::Failed(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The rendered arguments with the sink's clock sync off (added when the template does
/// not set it): a recording is read as fast as it decodes.
pub fn unsynced(mut args: Vec<String>) -> Vec<String> {
    let sink = args.iter().position(|a| a == "minioframesink");
    let mut found = false;
    for a in args.iter_mut().filter(|a| a.starts_with("sync=")) {
        *a = "sync=false".into();
        found = true;
    }
    if let (false, Some(i)) = (found, sink) {
        args.insert(i + 1, "sync=false".into());
    }
    args
}

fn items(v: &[Item]) -> String {
    v.iter()
        .map(|i| format!("{} x{}", i.name, i.quantity))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per order: ID, frames, status and what differs.
pub fn order_line(r: &OrderResult) -> String {
    let v = &r.validation;
    let mut line = format!(
        "order {:<10} {:>3} frames  {}",
        r.order_id,
        r.manifest_frame_count.unwrap_or(0),
        v.status.as_str()
    );
    if !v.missing.is_empty() {
        line.push_str(&format!("  missing: {}", items(&v.missing)));
    }
    if !v.extra.is_empty() {
        line.push_str(&format!("  extra: {}", items(&v.extra)));
    }
    for q in &v.quantity_mismatch {
        line.push_str(&format!(
            "  {}: {} expected, {} seen",
            q.name, q.expected, q.detected
        ));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!("  ({e})"));
    }
    line
}

/// The closing line: counts per status and the speed against real time.
pub fn summary(report: &Report) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for r in &report.orders {
        let s = r.validation.status.as_str();
        match counts.iter_mut().find(|(n, _)| *n == s) {
            Some((_, c)) => *c += 1,
            None => counts.push((s, 1)),
        }
    }
    let by_status = counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let secs = report.elapsed.as_secs_f64().max(0.001);
    format!(
        "{} order(s) in {} s of video, checked in {secs:.1} s ({:.1}x real time): {by_status}",
        report.orders.len(),
        report.frames,
        report.frames as f64 / secs
    )
}

/// `--json`: the report with each order's full result.
pub fn to_json(report: &Report) -> serde_json::Value {
    let secs = report.elapsed.as_secs_f64();
    serde_json::json!({
        "file": report.file,
        "station_id": report.station,
        "video_s": report.frames,
        "checked_s": (secs * 10.0).round() / 10.0,
        "speedup": if secs > 0.0 { ((report.frames as f64 / secs) * 10.0).round() / 10.0 } else { 0.0 },
        "orders": report.orders,
    })
}

/// Removes the check's S3 root however the check ends (unless it is to be kept).
struct RootGuard<'a>(&'a Path, bool);

impl Drop for RootGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
}

/// Longest time with no line from the pipeline before it is taken for hung.
const QUIET_LIMIT: Duration = Duration::from_secs(120);

impl Check {
    /// Runs the check. The AWS credentials of the process sign for the S3 server started
    /// here (the pipeline gets them through its environment). Ctrl-C stops it: the
    /// pipeline is killed (`kill_on_drop`) and the folder removed unless kept.
    pub async fn run(self) -> Result<Report, CheckError> {
        let started = Instant::now();
        if !self.file.is_file() {
            return Err(CheckError::Unplayable(format!(
                "{}: no such file",
                self.file.display()
            )));
        }
        let (Ok(access), Ok(secret)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) else {
            return Err(CheckError::Failed(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set".into(),
            ));
        };
        let _root = RootGuard(&self.root, self.keep);
        let server = oa_s3server::S3Server::start(oa_s3server::Options {
            buckets: vec![BUCKET.into()],
            record_puts: false,
            ..oa_s3server::Options::new(&self.root, access, secret)
        })
        .await
        .map_err(|e| CheckError::Failed(format!("cannot start the S3 server: {e}")))?;
        let endpoint = server.endpoint();
        let out = tokio::select! {
            out = self.play_and_collect(&endpoint, started) => out,
            _ = tokio::signal::ctrl_c() => Err(CheckError::Failed("interrupted".into())),
        };
        server.shutdown().await;
        out
    }

    async fn play_and_collect(
        &self,
        endpoint: &str,
        started: Instant,
    ) -> Result<Report, CheckError> {
        let id = self.station.id.clone();
        let storage = StorageTarget {
            endpoint: endpoint.to_owned(),
            bucket: BUCKET.into(),
            prefix: String::new(),
        };
        let plan = supervise::plan(
            &self.supervision,
            &storage,
            &self.station,
            &CameraEnv::default(),
            &format!("check-video-{}", std::process::id()),
        )
        .map_err(CheckError::Failed)?;
        let store = Store::connect(Some(endpoint), "us-east-1", true).await;
        let layout = Layout {
            bucket: BUCKET.into(),
            prefix: String::new(),
            results_bucket: BUCKET.into(),
            results_prefix: String::new(),
        };
        let consumer = Consumer::new(ConsumerDeps {
            store: store.clone(),
            settings: consume::Settings {
                stations: vec![id.clone()],
                layout: layout.clone(),
                poll_interval: Duration::from_millis(250),
                max_concurrent_orders: 2,
                frames_per_order: self.frames_per_order,
                claim: false,
                claim_ttl: Duration::from_secs(600),
                list_page_size: 1000,
                owner: consume::default_owner(),
                recognition_retry: Duration::ZERO,
                retry_delay: Duration::from_millis(200),
                orphan_after: None,
                expected_wait: Duration::ZERO,
                reuse_after: Duration::from_secs(u64::from(self.station.reuse_after_s.max(1))),
            },
            recognizer: self.recognizer.clone(),
            orders: Arc::new(self.orders.clone()),
            inventory: self.inventory.clone(),
            metrics: Arc::new(Metrics::new()),
            detector: self.detector.clone(),
            expected: None,
        });
        let stop = crate::shutdown::Shutdown::new();
        let consuming = tokio::spawn(consumer.clone().run(stop.listener()));
        let launch = Launch {
            gst_launch: self.supervision.gst_launch.clone(),
            plugin_path: self.supervision.plugin_path.clone(),
        };
        let played = self
            .play(&launch, unsynced(plan.args), &consumer, &id)
            .await;
        let results = match played {
            Ok((_, ref stored)) => Some(
                self.results_of(&store, &layout, &consumer, &id, stored)
                    .await,
            ),
            Err(_) => None,
        };
        stop.trigger();
        let _ = consuming.await;
        let (frames, _) = played?;
        let orders = results.expect("played")?;
        if orders.is_empty() {
            return Err(CheckError::NoOrder(format!(
                "no order slip was read in {} ({frames} frames at 1 frame/s): check the \
                 station's roi (or --roi x,y,width,height; --roi full reads the whole frame) \
                 and that the slip's number matches ocrsegment's order-pattern",
                self.file.display()
            )));
        }
        Ok(Report {
            file: self.file.clone(),
            station: id,
            frames,
            orders,
            elapsed: started.elapsed(),
        })
    }

    /// Plays the recording to its end; the frames read and the orders stored, in order.
    async fn play(
        &self,
        launch: &Launch,
        args: Vec<String>,
        consumer: &Arc<Consumer>,
        id: &str,
    ) -> Result<(u64, Vec<String>), CheckError> {
        let mut child = launch.command(&args).spawn().map_err(|e| {
            CheckError::Failed(format!(
                "cannot start {}: {e}",
                self.supervision.gst_launch.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                let mut buf = Vec::new();
                while let Some(l) = supervise::next_line(&mut r, &mut buf).await {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut frames = 0;
        let mut stored: Vec<String> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut unbuildable: Option<String> = None;
        let mut exited = None;
        let mut open = true;
        while open || exited.is_none() {
            let line = tokio::select! {
                l = rx.recv(), if open => match l {
                    Some(l) => l,
                    None => { open = false; continue; }
                },
                status = child.wait(), if exited.is_none() => {
                    exited = Some(status);
                    // Whatever is still in the pipes comes within a moment; a process
                    // that inherited them must not keep the check waiting.
                    crate::supervise::child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                    let drain = tokio::time::timeout(Duration::from_secs(2), async {
                        let mut rest = Vec::new();
                        while let Some(l) = rx.recv().await {
                            rest.push(l);
                        }
                        rest
                    });
                    let rest = drain.await.unwrap_or_default();
                    open = false;
                    for l in rest {
                        self.note(&l, id, consumer, &mut frames, &mut stored, &mut errors, &mut unbuildable);
                    }
                    continue;
                }
                _ = tokio::time::sleep(QUIET_LIMIT) => {
                    crate::supervise::child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                    return Err(CheckError::Failed(format!(
                        "the pipeline said nothing for {} s: killed (run with \
                         GST_DEBUG=3 to see where it stands)",
                        QUIET_LIMIT.as_secs()
                    )));
                }
            };
            self.note(
                &line,
                id,
                consumer,
                &mut frames,
                &mut stored,
                &mut errors,
                &mut unbuildable,
            );
            if let Some(tell) = &self.on_progress {
                tell(frames, stored.len());
            }
            if self.progress {
                eprint!(
                    "\r  {frames} s of video read, {} order(s) stored",
                    stored.len()
                );
            }
        }
        if self.progress {
            eprintln!();
        }
        if let Some(why) = unbuildable {
            return Err(CheckError::Failed(format!(
                "the pipeline cannot be built: {why} (is the plugin on GST_PLUGIN_PATH or \
                 supervision.plugin_path?)"
            )));
        }
        let status = exited
            .expect("waited")
            .map_err(|e| CheckError::Failed(format!("waiting for gst-launch-1.0: {e}")))?;
        if !status.success() || !errors.is_empty() {
            let why = match errors.first() {
                Some(first) => first.clone(),
                None => supervise::child::describe_exit(status),
            };
            return Err(CheckError::Unplayable(format!(
                "{} could not be played: {why}",
                self.file.display()
            )));
        }
        Ok((frames, stored))
    }

    /// What one line of the pipeline's output tells.
    #[allow(clippy::too_many_arguments)]
    fn note(
        &self,
        line: &str,
        id: &str,
        consumer: &Arc<Consumer>,
        frames: &mut u64,
        stored: &mut Vec<String>,
        errors: &mut Vec<String>,
        unbuildable: &mut Option<String>,
    ) {
        match protocol::classify(line) {
            Signal::Progress(c) => *frames = (*frames).max(c.received),
            Signal::OrderStored(order) => {
                consumer.hint(id, &order);
                if !stored.contains(&order) {
                    stored.push(order);
                }
            }
            Signal::Playing => {}
            Signal::Line => {
                tracing::debug!(station = %id, "{line}");
                // The first error says it, the rest follow from it.
                match protocol::launch_failure(line) {
                    Some(protocol::LaunchFailure::Element(what)) => errors.push(what),
                    Some(protocol::LaunchFailure::Unbuildable(what)) => {
                        unbuildable.get_or_insert(what);
                    }
                    None => {}
                }
            }
        }
    }

    /// Waits for the result of every stored order, computed from its latest manifest
    /// (an order seen again is processed again), up to `result_wait` per order.
    async fn results_of(
        &self,
        store: &Store,
        layout: &Layout,
        consumer: &Arc<Consumer>,
        id: &str,
        stored: &[String],
    ) -> Result<Vec<OrderResult>, CheckError> {
        let deadline =
            Instant::now() + Duration::from_secs(30) + self.result_wait * stored.len() as u32;
        let failed = |e: &dyn std::fmt::Display| CheckError::Failed(e.to_string());
        let mut results = Vec::with_capacity(stored.len());
        for order in stored {
            let key = layout.result_key(id, order).map_err(|e| failed(&e))?;
            let marker = oa_contract::marker_key("", id, order).map_err(|e| failed(&e))?;
            let frame_count = match store.get(BUCKET, &marker).await.map_err(|e| failed(&e))? {
                Some(m) => serde_json::from_slice::<oa_contract::Manifest>(&m.body)
                    .map(|m| m.frame_count)
                    .ok(),
                None => None,
            };
            loop {
                if let Some(obj) = store.get(BUCKET, &key).await.map_err(|e| failed(&e))?
                    && let Ok(r) = serde_json::from_slice::<OrderResult>(&obj.body)
                    && r.validation.status != OrderStatus::AwaitingOrder
                    && (frame_count.is_none() || r.manifest_frame_count == frame_count)
                {
                    results.push(r);
                    break;
                }
                if Instant::now() > deadline {
                    return Err(CheckError::Failed(format!(
                        "order {order}: no result in time (run with RUST_LOG=debug to see why)"
                    )));
                }
                let _ = consumer.poll_station(id).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(results)
    }
}

/// A fresh folder for a check's S3 server.
pub fn scratch_root() -> PathBuf {
    std::env::temp_dir().join(format!(
        "oa-check-video-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ))
}

/// Whether `path` looks like a folder a user asked to keep frames in (exists empty or not
/// at all).
pub fn keep_dir_ok(path: &Path) -> Result<(), String> {
    match std::fs::read_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--keep {}: {e}", path.display())),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "--keep {}: not empty (give a new or an empty folder)",
                path.display()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sinks_clock_sync_is_turned_off_or_added_off() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            unsynced(args("a ! minioframesink bucket=b sync=true")),
            args("a ! minioframesink bucket=b sync=false")
        );
        assert_eq!(
            unsynced(args("a ! minioframesink bucket=b")),
            args("a ! minioframesink sync=false bucket=b")
        );
    }
}
