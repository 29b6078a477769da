//! Runs a scenario end to end on real parts and scores it against the ground truth: the S3
//! server (`oa_s3server`, in process), the simulated stations over loopback RTSP (in
//! process), and the `orchestrator` binary with the `labels` recogniser, which starts one
//! `gst-launch-1.0` pipeline per station from `pipelines/rtsp-camera.pipeline`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{AtEnd, GroundTruth, Plan, Scenario, Simulator};
use oa_s3server::{Options, S3Server};

pub(crate) const ACCESS_KEY: &str = "sim-access";
pub(crate) const SECRET_KEY: &str = "sim-secret-key-0123456789";
pub(crate) const BUCKET: &str = "frames";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A shipped scenario file, e.g. `scenario_path("demo.toml")`.
pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// The folder holding `orchestrator` and `libgstorderaccuracy.so`: next to this program
/// (or its parent, for test programs in `deps/`), else `target/release` of the checkout.
pub fn release_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            if d.join("orchestrator").is_file() && d.join("libgstorderaccuracy.so").is_file() {
                return d.to_path_buf();
            }
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release")
}

/// SIGINT, as Ctrl-C would send: the child shuts down gracefully (gst-launch `-e` ends its
/// orders, the orchestrator drains).
pub fn interrupt(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // A child that already exited has nothing left to stop.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
}

/// A temporary folder removed on drop (kept when `OA_KEEP_TEST_DIRS` is set).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("oa-sim-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("OA_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An `orchestrator run` of a test or a benchmark, killed when dropped (its log printed
/// when a test panics).
pub struct Orchestrator {
    pub child: Child,
    pub log: PathBuf,
}

impl Orchestrator {
    /// Starts `orchestrator run --config cfg`, its output appended to `log`, with the S3
    /// credentials and `env`.
    pub fn spawn(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Orchestrator {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let bin = release_dir().join("orchestrator");
        let child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(cfg)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with `cargo build --release`, or set \
                     CARGO_TARGET_DIR to the target folder that holds it)",
                    bin.display()
                )
            });
        Orchestrator {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Panics, with the log, when the orchestrator has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "orchestrator exited early ({status}); log:\n{}",
                self.log_text()
            );
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("orchestrator log (last lines):\n{}", self.log_tail());
        }
    }
}

/// What one end-to-end run produced.
pub struct Outcome {
    pub truth: GroundTruth,
    /// `results/{station}/{order}.json`, by (station, order).
    pub results: BTreeMap<(String, String), serde_json::Value>,
    /// `(station, order)` of every `__EOS__` marker in the bucket.
    pub markers: Vec<(String, String)>,
    /// Capture times (Unix ms) of the frames each manifest names, by (station, order).
    pub frames: BTreeMap<(String, String), Vec<u64>>,
    /// When each result object was written (Unix ms, from the stored file).
    pub result_times: BTreeMap<(String, String), u64>,
    /// Per station, the wall-clock time (Unix ms) of second 0 of its scenario.
    pub stream_starts: BTreeMap<String, u64>,
    pub seconds: f64,
    pub log_tail: String,
}

pub(crate) fn read_results(bucket_dir: &Path) -> BTreeMap<(String, String), serde_json::Value> {
    let mut out = BTreeMap::new();
    let Ok(stations) = std::fs::read_dir(bucket_dir.join("results")) else {
        return out;
    };
    for st in stations.flatten() {
        let station = st.file_name().to_string_lossy().into_owned();
        if station.starts_with('.') {
            continue;
        }
        for f in std::fs::read_dir(st.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(order) = name.strip_suffix(".json") else {
                continue;
            };
            if let Ok(body) = std::fs::read(f.path())
                && let Ok(v) = serde_json::from_slice(&body)
            {
                out.insert((station.clone(), order.to_string()), v);
            }
        }
    }
    out
}

pub(crate) fn result_times(bucket_dir: &Path) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for key in read_results(bucket_dir).into_keys() {
        let path = bucket_dir
            .join("results")
            .join(&key.0)
            .join(format!("{}.json", key.1));
        if let Ok(t) = std::fs::metadata(&path).and_then(|m| m.modified())
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            out.insert(key, d.as_millis() as u64);
        }
    }
    out
}

pub(crate) fn read_frames(
    bucket_dir: &Path,
    markers: &[(String, String)],
) -> BTreeMap<(String, String), Vec<u64>> {
    let mut out = BTreeMap::new();
    for (st, o) in markers {
        let path = bucket_dir.join(st).join(o).join("__EOS__");
        let Ok(body) = std::fs::read(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
            continue;
        };
        let times = v["frames"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["unix_ms"].as_u64()).collect())
            .unwrap_or_default();
        out.insert((st.clone(), o.clone()), times);
    }
    out
}

/// `(station, order, folder)` of every order folder in the bucket's folder, sorted.
pub(crate) fn order_dirs(bucket_dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for st in std::fs::read_dir(bucket_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let station = st.file_name().to_string_lossy().into_owned();
        if station.starts_with('.') || station == "results" || station == "claims" {
            continue;
        }
        for o in std::fs::read_dir(st.path()).into_iter().flatten().flatten() {
            let order = o.file_name().to_string_lossy().into_owned();
            // The station index and files beside the stations are not orders.
            if order == oa_contract::INDEX_DIR || !o.path().is_dir() {
                continue;
            }
            out.push((station.clone(), order, o.path()));
        }
    }
    out.sort();
    out
}

pub(crate) fn read_markers(bucket_dir: &Path) -> Vec<(String, String)> {
    order_dirs(bucket_dir)
        .into_iter()
        .filter(|(_, _, dir)| dir.join("__EOS__").exists())
        .map(|(st, o, _)| (st, o))
        .collect()
}

/// What a run changes in the orchestrator's configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tweaks {
    /// Lines of `[recognition]`; empty: the `labels` backend.
    pub recognition: String,
    /// Extra lines of `[supervision]` and `[processing]`.
    pub supervision: String,
    pub processing: String,
    /// `processing.expected_wait_s`; `None`: 5.
    pub expected_wait_s: Option<u32>,
    /// Tables appended after the stations (e.g. `[events]`); empty: none.
    pub extra: String,
    /// Every station's `reuse_after_s`; `None`: the default.
    pub reuse_after_s: Option<u32>,
    /// Every station's `roi` ("x,y,w,h"); `None`: the whole frame.
    pub roi: Option<String>,
}

/// The orchestrator's configuration for the simulated stations at `urls`.
pub(crate) fn config_toml(
    endpoint: &str,
    http_port: u16,
    urls: &[(String, String)],
    tweaks: &Tweaks,
) -> String {
    let recognition = if tweaks.recognition.is_empty() {
        "backend = \"labels\"\n"
    } else {
        &tweaks.recognition
    };
    let mut toml = format!(
        r#"orders_file = "orders.json"
inventory_file = "inventory.json"

[storage]
endpoint = "{endpoint}"
bucket = "{BUCKET}"
force_path_style = true

[recognition]
{recognition}
[http]
bind = "127.0.0.1:{http_port}"

[supervision]
pipelines_dir = "{pipelines}"
plugin_path = "{plugins}"
backoff_s = [1, 2]
shutdown_grace_s = 10
{supervision}
[processing]
poll_interval_ms = 200
# The scenario's unknown orders never get expected items: a short wait shows them sooner.
expected_wait_s = {expected_wait_s}
frames_per_order = 4
{processing}"#,
        pipelines = repo_root().join("pipelines").display(),
        plugins = release_dir().display(),
        supervision = tweaks.supervision,
        processing = tweaks.processing,
        expected_wait_s = tweaks.expected_wait_s.unwrap_or(5),
    );
    for (id, url) in urls {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"{id}\"\nsource = \"{url}\"\nidle_timeout_ms = 3000\n"
        ));
        if let Some(s) = tweaks.reuse_after_s {
            toml.push_str(&format!("reuse_after_s = {s}\n"));
        }
        if let Some(roi) = &tweaks.roi {
            toml.push_str(&format!("roi = \"{roi}\"\n"));
        }
    }
    if !tweaks.extra.is_empty() {
        toml.push('\n');
        toml.push_str(&tweaks.extra);
    }
    toml
}

/// Runs the scenario file end to end; returns once every expected order has a result (or
/// the time is up) and the orchestrator has stopped. Panics, with the reason, when a part
/// is missing or fails.
pub fn run(scenario: &Path, tag: &str) -> Outcome {
    match run_scenario(scenario, tag, None, None) {
        Ran::Plain(outcome) => outcome,
        Ran::Pos(pos) => pos.outcome,
    }
}

/// The orchestrator of a [`run_watched`] run, as its watcher sees it.
pub struct Live {
    /// `http://127.0.0.1:{port}`, the API and the dashboard.
    pub base_url: String,
    /// Tokens the orchestrator accepts (`OA_API_READ_TOKENS`, `OA_API_WRITE_TOKENS`).
    pub read_token: String,
    pub write_token: String,
    /// The stations and how many orders the scenario completes.
    pub stations: Vec<String>,
    pub expected: usize,
    /// The run's scratch folder (removed afterwards).
    pub dir: PathBuf,
}

/// A watcher of a run: called on a thread of its own once the orchestrator is spawned,
/// beside the wait for the results; the orchestrator is stopped only after it returns.
type Watch<'w> = Box<dyn FnOnce(&Live) + Send + 'w>;

/// [`run`] with the API behind tokens and `watch` looking on while the scenario plays
/// (a browser on the dashboard, say); returns the outcome and what `watch` returned.
pub fn run_watched<T: Send>(
    scenario: &Path,
    tag: &str,
    watch: impl FnOnce(&Live) -> T + Send,
) -> (Outcome, T) {
    let mut seen = None;
    let watch: Watch<'_> = Box::new(|live: &Live| seen = Some(watch(live)));
    let outcome = match run_scenario(scenario, tag, None, Some(watch)) {
        Ran::Plain(outcome) => outcome,
        Ran::Pos(pos) => pos.outcome,
    };
    (outcome, seen.expect("the watcher returned"))
}

/// What one [`run_scenario`] produced: with a point of sale or without.
enum Ran {
    Plain(Outcome),
    Pos(PosOutcome),
}

/// The runner behind [`run`] and [`run_with_pos`]: the S3 server, the simulator, the
/// configuration and the orchestrator, the wait for the results, the interrupt and the
/// outcome; `pos` adds the point of sale's parts ([`PosSide`]).
fn run_scenario(
    scenario: &Path,
    tag: &str,
    pos: Option<PosOptions<'_>>,
    watch: Option<Watch<'_>>,
) -> Ran {
    let orchestrator_bin = release_dir().join("orchestrator");
    assert!(
        orchestrator_bin.exists(),
        "{} is missing: build it first with `cargo build --release` (scripts/test.sh does)",
        orchestrator_bin.display()
    );
    assert!(
        release_dir().join("libgstorderaccuracy.so").exists(),
        "{} has no libgstorderaccuracy.so: run `cargo build --release`",
        release_dir().display()
    );
    let started = Instant::now();
    let dir = TempDir::new(tag);
    let plan = Plan::new(Scenario::load(scenario).unwrap()).unwrap();
    plan.write_files(&dir.0).unwrap();
    if pos.is_some() {
        // Every expected item comes from the point of sale.
        std::fs::write(dir.0.join("orders.json"), "{}\n").unwrap();
    }
    let truth = plan.ground_truth();

    // The S3 server runs on this runtime; declared first, so it outlives the server.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt
        .block_on(S3Server::start(Options {
            buckets: vec![BUCKET.into()],
            ..Options::new(dir.0.join("s3"), ACCESS_KEY, SECRET_KEY)
        }))
        .unwrap();
    let bucket_dir = dir.0.join("s3").join(BUCKET);
    let mut pos = pos.map(|p| PosSide::start(p, &rt, &dir.0));
    // Hold: a pipeline the orchestrator restarts sees an empty table, not a replay.
    let sim = Simulator::serve(&plan, 0, AtEnd::Hold).unwrap();

    let http_port = crate::pos::free_port();
    let addr = format!("127.0.0.1:{http_port}");
    let tweaks = Tweaks {
        reuse_after_s: plan.scenario.reuse_after_s,
        ..pos.as_ref().map(PosSide::tweaks).unwrap_or_default()
    };
    let toml = config_toml(&s3.endpoint(), http_port, sim.urls(), &tweaks);
    let cfg = dir.0.join("orchestrator.toml");
    std::fs::write(&cfg, toml).unwrap();
    let live = watch.as_ref().map(|_| Live {
        base_url: format!("http://{addr}"),
        read_token: format!("dashboard-read-{}", std::process::id()),
        write_token: format!("dashboard-write-{}", std::process::id()),
        stations: plan.stations.iter().map(|s| s.station_id.clone()).collect(),
        expected: truth.orders.len(),
        dir: dir.0.clone(),
    });
    let mut env: Vec<(&str, &str)> = pos
        .as_ref()
        .map(PosSide::env)
        .into_iter()
        .flatten()
        .collect();
    if let Some(l) = &live {
        env.push(("OA_API_READ_TOKENS", &l.read_token));
        env.push(("OA_API_WRITE_TOKENS", &l.write_token));
    }
    let mut orch = Orchestrator::spawn(&cfg, &dir.0.join("orchestrator.log"), &env);
    if let Some(p) = &mut pos {
        p.connect(&mut orch, &addr, &bucket_dir);
    }

    let expected = truth.orders.len();
    let longest = truth.durations_s.values().cloned().fold(0.0, f64::max);
    let wait_s = pos.as_ref().map_or(0.0, |p| f64::from(p.expected_wait_s));
    let deadline = Instant::now() + Duration::from_secs_f64(longest + wait_s + 120.0);
    // The point of sale polls more often, for its late PUTs.
    let (poll, settle) = match pos {
        Some(_) => (Duration::from_millis(200), Duration::from_secs(3)),
        None => (Duration::from_millis(500), Duration::from_secs(4)),
    };
    let watched = std::thread::scope(|scope| {
        let watcher = watch.map(|w| {
            let live = live.as_ref().expect("a watched run has its Live");
            scope.spawn(move || w(live))
        });
        loop {
            orch.assert_running();
            if let Some(p) = &mut pos {
                p.poll(&addr, &bucket_dir);
            }
            let done = read_results(&bucket_dir).len();
            if done >= expected && pos.as_ref().is_none_or(|p| p.settled(done)) {
                break;
            }
            if Instant::now() > deadline {
                match &pos {
                    Some(p) => tracing::warn!(
                        "time is up with {done} of {expected} results, {} webhook order events",
                        p.order_events()
                    ),
                    None => tracing::warn!("time is up with {done} of {expected} results"),
                }
                break;
            }
            std::thread::sleep(poll);
        }
        // Anything that was still on its way (a split or a duplicate, a late MQTT or SSE
        // message) gets its chance to show.
        std::thread::sleep(settle);
        watcher.map(|h| h.join())
    });
    interrupt(&orch.child);
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    while orch.child.try_wait().unwrap().is_none() && Instant::now() < stop_deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = writeln!(
        std::io::stderr(),
        "orchestrator log tail:\n{}",
        orch.log_tail()
    );
    let stream_starts = plan
        .stations
        .iter()
        .zip(sim.stream_starts())
        .filter_map(|(st, t)| Some((st.station_id.clone(), t?)))
        .collect();
    drop(sim);
    let markers = read_markers(&bucket_dir);
    let outcome = Outcome {
        truth,
        results: read_results(&bucket_dir),
        frames: read_frames(&bucket_dir, &markers),
        result_times: result_times(&bucket_dir),
        stream_starts,
        markers,
        seconds: started.elapsed().as_secs_f64(),
        log_tail: orch.log_tail(),
    };
    // The watcher's panic (a failed check), once the orchestrator is down.
    if let Some(Err(panic)) = watched {
        eprintln!("{}", outcome.table());
        std::panic::resume_unwind(panic);
    }
    match pos {
        Some(p) => Ran::Pos(p.finish(outcome)),
        None => Ran::Plain(outcome),
    }
}

/// `name x quantity` pairs, sorted, for comparing item lists.
pub fn items(v: &serde_json::Value) -> Vec<(String, u64)> {
    sorted_rows(v, |i| (name(i), count(i, "quantity")))
}

/// One row per element of the JSON array `v` (none if it is not an array), sorted.
fn sorted_rows<T: Ord>(v: &serde_json::Value, row: impl Fn(&serde_json::Value) -> T) -> Vec<T> {
    let mut out: Vec<T> = v
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().map(row).collect());
    out.sort();
    out
}

/// An item's `name` in a result (empty if absent).
fn name(item: &serde_json::Value) -> String {
    item["name"].as_str().unwrap_or("").to_string()
}

/// An item's count `field` in a result (0 if absent).
fn count(item: &serde_json::Value, field: &str) -> u64 {
    item[field].as_u64().unwrap_or(0)
}

impl Outcome {
    /// One line per expected order and per unexpected result.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for e in &self.truth.orders {
            let got = self
                .results
                .get(&(e.station_id.clone(), e.order_id.clone()));
            s.push_str(&format!(
                "{}/{}: expected {}, got {}\n",
                e.station_id,
                e.order_id,
                e.status,
                got.map_or("nothing".to_string(), |r| format!(
                    "{} detected={:?} missing={:?} extra={:?} qty={}",
                    r["status"].as_str().unwrap_or("?"),
                    items(&r["detected"]),
                    items(&r["missing"]),
                    items(&r["extra"]),
                    r["quantity_mismatch"]
                ))
            ));
        }
        for (st, o) in self.results.keys() {
            if !self
                .truth
                .orders
                .iter()
                .any(|e| &e.station_id == st && &e.order_id == o)
            {
                s.push_str(&format!("{st}/{o}: NOT IN THE SCENARIO\n"));
            }
        }
        s
    }

    /// Every order found once, no other order, and every marker processed.
    pub fn assert_segmentation(&self) {
        let table = self.table();
        let found: Vec<(String, String)> = self.results.keys().cloned().collect();
        let mut want: Vec<(String, String)> = self
            .truth
            .orders
            .iter()
            .map(|e| (e.station_id.clone(), e.order_id.clone()))
            .collect();
        want.sort();
        assert_eq!(
            found, want,
            "orders found differ from the scenario:\n{table}\n{}",
            self.log_tail
        );
        for m in &self.markers {
            assert!(
                self.results.contains_key(m),
                "{}/{} has a marker but no result (left unprocessed)\n{table}",
                m.0,
                m.1
            );
        }
        let strays: Vec<_> = self.markers.iter().filter(|m| !want.contains(m)).collect();
        assert!(strays.is_empty(), "orders not in the scenario: {strays:?}");
    }
}

/// Scores of one run against the ground truth.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    pub orders_expected: usize,
    /// Orders stored (one `__EOS__` marker each).
    pub orders_stored: usize,
    /// Expected orders with a marker of their own.
    pub found: usize,
    /// Expected orders without one.
    pub missed: usize,
    /// Stored orders that are not in the scenario (misread IDs, pieces of a split order).
    pub spurious: usize,
    /// Expected orders whose time also holds frames of a spurious order.
    pub split: usize,
    /// Expected orders without a marker whose frames went to another order.
    pub merged: usize,
    pub precision: f64,
    pub recall: f64,
    /// Stored frames tagged with the order whose segment (from its slip's appearance,
    /// less one second, to the next slip's) holds their capture time.
    pub frames_total: usize,
    pub frames_correct: usize,
    /// Expected orders whose result has the expected status and differences.
    pub validation_correct: usize,
    /// From the end of an order (its slip leaving) to its result, in ms, sorted.
    pub latencies_ms: Vec<u64>,
}

fn pct(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn sorted_items(v: &[crate::ItemQty]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = v
        .iter()
        .map(|i| (i.name.clone(), u64::from(i.quantity)))
        .collect();
    out.sort();
    out
}

fn sorted_mismatches(v: &serde_json::Value) -> Vec<(String, u64, u64)> {
    sorted_rows(v, |q| (name(q), count(q, "expected"), count(q, "detected")))
}

impl Outcome {
    /// Whether the result of an expected order has its expected status and differences.
    pub fn result_matches(&self, e: &crate::ExpectedOrder) -> Result<(), String> {
        let Some(r) = self
            .results
            .get(&(e.station_id.clone(), e.order_id.clone()))
        else {
            return Err("no result".into());
        };
        if r["status"] != e.status.as_str() {
            return Err(format!("status {} instead of {}", r["status"], e.status));
        }
        if e.status == "unknown-order" {
            return Ok(());
        }
        if items(&r["missing"]) != sorted_items(&e.missing) {
            return Err(format!("missing {:?}", items(&r["missing"])));
        }
        if items(&r["extra"]) != sorted_items(&e.extra) {
            return Err(format!("extra {:?}", items(&r["extra"])));
        }
        let mut want: Vec<(String, u64, u64)> = e
            .quantity_mismatch
            .iter()
            .map(|q| (q.name.clone(), u64::from(q.expected), u64::from(q.detected)))
            .collect();
        want.sort();
        let got = sorted_mismatches(&r["quantity_mismatch"]);
        if got != want {
            return Err(format!("quantity mismatches {got:?}"));
        }
        Ok(())
    }

    /// Which expected order's segment holds second `t` of a station's stream.
    fn segment_at(&self, station: &str, t: f64) -> Option<&str> {
        let orders: Vec<&crate::ExpectedOrder> = self
            .truth
            .orders
            .iter()
            .filter(|o| o.station_id == station)
            .collect();
        orders
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| t >= o.start_s - 1.0)
            .map(|(_, o)| o.order_id.as_str())
    }

    pub fn evaluate(&self) -> Evaluation {
        let mut ev = Evaluation {
            orders_expected: self.truth.orders.len(),
            orders_stored: self.markers.len(),
            ..Evaluation::default()
        };
        let expected = |st: &str, o: &str| {
            self.truth
                .orders
                .iter()
                .any(|e| e.station_id == st && e.order_id == o)
        };
        // Frame attribution, and which segments the spurious orders' frames fall into.
        let mut spurious_in: Vec<(String, String)> = Vec::new();
        let mut foreign_in: Vec<(String, String)> = Vec::new();
        for ((st, o), times) in &self.frames {
            let Some(start) = self.stream_starts.get(st) else {
                continue;
            };
            for &ms in times {
                let t = (ms as f64 - *start as f64) / 1000.0;
                let seg = self.segment_at(st, t);
                ev.frames_total += 1;
                if seg == Some(o.as_str()) {
                    ev.frames_correct += 1;
                } else if let Some(seg) = seg {
                    let key = (st.clone(), seg.to_string());
                    if !expected(st, o) {
                        spurious_in.push(key);
                    } else {
                        foreign_in.push(key);
                    }
                }
            }
        }
        for e in &self.truth.orders {
            let key = (e.station_id.clone(), e.order_id.clone());
            if self.markers.contains(&key) {
                ev.found += 1;
                if spurious_in.contains(&key) {
                    ev.split += 1;
                }
            } else {
                ev.missed += 1;
                if foreign_in.contains(&key) || spurious_in.contains(&key) {
                    ev.merged += 1;
                }
            }
            if self.result_matches(e).is_ok() {
                ev.validation_correct += 1;
            }
            if let (Some(done), Some(start)) = (
                self.result_times.get(&key),
                self.stream_starts.get(&e.station_id),
            ) {
                let end = *start + (e.end_s * 1000.0) as u64;
                ev.latencies_ms.push(done.saturating_sub(end));
            }
        }
        ev.spurious = self
            .markers
            .iter()
            .filter(|(st, o)| !expected(st, o))
            .count();
        ev.precision = pct(ev.found, ev.orders_stored);
        ev.recall = pct(ev.found, ev.orders_expected);
        ev.latencies_ms.sort_unstable();
        ev
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "segmentation: {} expected, {} stored, {} found, {} missed, {} split, {} merged, \
             {} spurious; precision {:.3}, recall {:.3}",
            self.orders_expected,
            self.orders_stored,
            self.found,
            self.missed,
            self.split,
            self.merged,
            self.spurious,
            self.precision,
            self.recall
        )?;
        writeln!(
            f,
            "frame attribution: {} of {} frames in their order's segment ({:.3})",
            self.frames_correct,
            self.frames_total,
            pct(self.frames_correct, self.frames_total)
        )?;
        writeln!(
            f,
            "validation: {} of {} orders with the expected status and differences ({:.3})",
            self.validation_correct,
            self.orders_expected,
            pct(self.validation_correct, self.orders_expected)
        )?;
        let p = |q| percentile(&self.latencies_ms, q).map_or("-".into(), |v| format!("{v} ms"));
        write!(
            f,
            "latency from order end to result: p50 {}, p90 {}, p99 {}, max {} ({} orders)",
            p(50.0),
            p(90.0),
            p(99.0),
            p(100.0),
            self.latencies_ms.len()
        )
    }
}

/// When [`run_with_pos`] stores an order's expected items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutWhen {
    /// As soon as the orchestrator serves its API: before the order's bag is complete.
    AtStart,
    /// Once `GET /api/orders` shows the order `awaiting-order` (its bag is complete).
    WhenAwaiting,
}

/// An order whose expected items the point of sale stores through the API.
#[derive(Debug, Clone)]
pub struct PosPut {
    pub station_id: String,
    pub order_id: String,
    pub items: Vec<(String, u32)>,
    pub when: PutWhen,
}

/// A PUT as it was made.
#[derive(Debug, Clone)]
pub struct PutRecord {
    pub put: PosPut,
    /// Unix ms the PUT was answered.
    pub at_ms: u64,
    /// Whether the order's `__EOS__` marker (its complete bag) was in the bucket then.
    pub bag_complete: bool,
    /// The order's status in `GET /api/orders` just before (`None`: not listed).
    pub status_before: Option<String>,
    /// The PUT's HTTP status, or why it failed.
    pub reply: Result<u16, String>,
}

/// The point of sale's side of the run: an events port of the orchestrator.
pub struct PosOutcome {
    pub outcome: Outcome,
    /// The orders PUT (those asked for that never became `awaiting-order` are missing).
    pub puts: Vec<PutRecord>,
    /// The orders asked for that were never PUT, and why.
    pub not_put: Vec<(PosPut, String)>,
    /// The webhook's secret (`X-OA-Signature` is its HMAC-SHA256 of each body).
    pub webhook_secret: String,
    pub webhook: Vec<crate::pos::WebhookDelivery>,
    /// The MQTT topic prefix (events on `{topic}/{station}/{type}`).
    pub mqtt_topic: String,
    pub mqtt: Vec<crate::pos::MqttMessage>,
    pub sse: Vec<crate::pos::SseMessage>,
    /// Why the SSE stream ended (`None`: still open when the run ended).
    pub sse_ended: Option<String>,
}

/// [`run`] with a point of sale: the orchestrator starts with an empty `orders_file`
/// (`{}`), `processing.expected_wait_s = expected_wait_s`, a webhook to a receiver here
/// (signed with a secret passed in its environment), MQTT to a mosquitto started here
/// (read by `mosquitto_sub`), and an SSE client on `/api/events`; `puts` are stored
/// through `PUT /api/expected-orders/{id}` as they ask. Returns once every expected order
/// has a result and the webhook has one order event per result (or the time is up), and
/// the orchestrator has stopped.
pub fn run_with_pos(
    scenario: &Path,
    tag: &str,
    puts: &[PosPut],
    expected_wait_s: u32,
) -> PosOutcome {
    let options = PosOptions {
        puts,
        expected_wait_s,
    };
    match run_scenario(scenario, tag, Some(options), None) {
        Ran::Pos(pos) => pos,
        Ran::Plain(_) => unreachable!("a run with a point of sale ends with its outcome"),
    }
}

/// What [`run_scenario`] adds for a point of sale.
struct PosOptions<'a> {
    puts: &'a [PosPut],
    expected_wait_s: u32,
}

/// The point of sale's parts during a run (dropped in this order: the subscriber before
/// its broker).
struct PosSide<'a> {
    hook: crate::pos::WebhookReceiver,
    sub: crate::pos::Subscriber,
    broker: crate::pos::Broker,
    mqtt_topic: String,
    secret: String,
    expected_wait_s: u32,
    /// Connected once the orchestrator's API is up.
    sse: Option<crate::pos::SseReader>,
    /// The PUTs made, and those still waiting for their order to be `awaiting-order`.
    records: Vec<PutRecord>,
    late: Vec<&'a PosPut>,
    puts: &'a [PosPut],
}

impl<'a> PosSide<'a> {
    /// The webhook receiver (on `rt`), mosquitto (configured in `dir`) and its subscriber:
    /// subscribed before the orchestrator starts, it misses nothing.
    fn start(options: PosOptions<'a>, rt: &tokio::runtime::Runtime, dir: &Path) -> Self {
        let hook = crate::pos::WebhookReceiver::start(rt.handle());
        let broker = crate::pos::Broker::start(dir);
        let mqtt_topic = "oa-pos".to_string();
        let sub = crate::pos::Subscriber::start(broker.port, &mqtt_topic);
        PosSide {
            hook,
            sub,
            broker,
            mqtt_topic,
            secret: format!("pos-secret-{}", std::process::id()),
            expected_wait_s: options.expected_wait_s,
            sse: None,
            records: Vec::new(),
            late: options
                .puts
                .iter()
                .filter(|p| p.when == PutWhen::WhenAwaiting)
                .collect(),
            puts: options.puts,
        }
    }

    /// The wait, the webhook and MQTT in the orchestrator's configuration.
    fn tweaks(&self) -> Tweaks {
        Tweaks {
            expected_wait_s: Some(self.expected_wait_s),
            extra: format!(
                "[[events.webhook]]\nname = \"pos\"\nurl = \"{}\"\nsecret_env = \"OA_WEBHOOK_SECRET\"\n\
                 timeout_s = 5\nmax_backoff_s = 2\n\n[events.mqtt]\nhost = \"127.0.0.1\"\n\
                 port = {}\ntopic = \"{}\"\nqos = 1\n",
                self.hook.url(),
                self.broker.port,
                self.mqtt_topic
            ),
            ..Tweaks::default()
        }
    }

    /// The orchestrator's environment: the webhook's secret.
    fn env(&self) -> [(&'static str, &str); 1] {
        [("OA_WEBHOOK_SECRET", self.secret.as_str())]
    }

    /// Once the orchestrator's API at `addr` is up: the SSE client, and the PUTs at start.
    fn connect(&mut self, orch: &mut Orchestrator, addr: &str, bucket_dir: &Path) {
        let up = crate::pos::wait_until(Duration::from_secs(30), || {
            orch.assert_running();
            crate::pos::http(addr, "GET", "/healthz", None).is_ok_and(|(s, _)| s == 200)
        });
        assert!(up, "the orchestrator's API is not up:\n{}", orch.log_tail());
        // An ID that is not retained: every event retained so far (the stations' first
        // states), then every new one.
        let sse = crate::pos::SseReader::connect(addr, "/api/events?last_event_id=pos-start")
            .unwrap_or_else(|e| panic!("GET /api/events: {e}\n{}", orch.log_tail()));
        self.sse = Some(sse);
        for p in self.puts.iter().filter(|p| p.when == PutWhen::AtStart) {
            self.records.push(put(addr, bucket_dir, p, None));
        }
    }

    /// PUTs the late orders that `GET /api/orders` now shows `awaiting-order`.
    fn poll(&mut self, addr: &str, bucket_dir: &Path) {
        if self.late.is_empty() {
            return;
        }
        let Ok(listed) = crate::pos::list_orders(addr) else {
            return;
        };
        let records = &mut self.records;
        self.late.retain(|p| {
            let status = listed
                .iter()
                .find(|(st, o, _)| *st == p.station_id && *o == p.order_id)
                .map(|(_, _, s)| s.clone());
            if status.as_deref() == Some("awaiting-order") {
                records.push(put(addr, bucket_dir, p, status));
                false
            } else {
                true
            }
        });
    }

    /// How many orders the webhook announced (by `Idempotency-Key`, duplicates dropped).
    fn order_events(&self) -> usize {
        let mut ids: Vec<String> = self
            .hook
            .snapshot()
            .iter()
            .filter_map(|d| d.header("idempotency-key").map(str::to_string))
            .filter(|k| k.starts_with("order:"))
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    /// Whether, with `done` results, every PUT is made and the webhook has an order event
    /// per result.
    fn settled(&self, done: usize) -> bool {
        self.late.is_empty() && self.order_events() >= done
    }

    fn finish(self, outcome: Outcome) -> PosOutcome {
        let sse = self.sse.as_ref();
        PosOutcome {
            outcome,
            not_put: self
                .late
                .iter()
                .map(|p| ((*p).clone(), "never shown awaiting-order".to_string()))
                .collect(),
            puts: self.records,
            webhook_secret: self.secret,
            webhook: self.hook.snapshot(),
            mqtt_topic: self.mqtt_topic,
            mqtt: self.sub.snapshot(),
            sse: sse.map(crate::pos::SseReader::snapshot).unwrap_or_default(),
            sse_ended: sse.and_then(|s| s.ended.lock().unwrap().clone()),
        }
    }
}

/// PUTs `p`'s expected items to the orchestrator's API at `addr`, and records it.
fn put(addr: &str, bucket_dir: &Path, p: &PosPut, status_before: Option<String>) -> PutRecord {
    let marker = bucket_dir
        .join(&p.station_id)
        .join(&p.order_id)
        .join("__EOS__");
    PutRecord {
        bag_complete: marker.exists(),
        // The till knows a reused number by the number alone.
        reply: crate::pos::put_expected(
            addr,
            oa_contract::split_order_key(&p.order_id).0,
            &p.items,
        )
        .map_err(|e| e.to_string()),
        at_ms: crate::pos::now_ms(),
        put: p.clone(),
        status_before,
    }
}
