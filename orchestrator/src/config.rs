//! The orchestrator's configuration: one TOML file (see `orchestrator.example.toml`).
//!
//! [`Config::load`] checks everything up front, so that a running orchestrator never meets
//! a bad setting; every error is one line that starts with the field it is about, e.g.
//! `stations[1].id: station ID may only hold letters, digits, '_' and '-', not '/'`.
//! Relative paths are resolved against the folder of the configuration file.

use crate::detector::DetectorConfig;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Pipeline file used for `rtsp://` and `rtsps://` sources when none is named.
pub const DEFAULT_RTSP_PIPELINE: &str = "rtsp-camera.pipeline";
/// Pipeline file used for `file://` URIs and plain paths when none is named.
pub const DEFAULT_FILE_PIPELINE: &str = "recorded-file.pipeline";
/// The pipelines shipped with the project.
pub const DEFAULT_PIPELINES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines");

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub stations: Vec<StationConfig>,
    pub storage: StorageConfig,
    pub recognition: RecognitionConfig,
    pub orders_file: PathBuf,
    pub inventory_file: PathBuf,
    pub http: HttpConfig,
    pub supervision: SupervisionConfig,
    pub processing: ProcessingConfig,
    /// The optional object detector for frame selection (`[selection]`).
    pub detector: Option<DetectorConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationConfig {
    /// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`, unique.
    pub id: String,
    /// `rtsp://` / `rtsps://` URL, `file://` URI or a path (made absolute when relative).
    pub source: String,
    /// File name inside `supervision.pipelines_dir`.
    pub pipeline: String,
    /// OCR region `x,y,width,height`; `None` for the whole frame.
    pub roi: Option<String>,
    pub idle_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// S3 endpoint URL; `None` for AWS's default.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
    /// Bucket for results; `None` means the frames bucket.
    pub results_bucket: Option<String>,
    /// Empty or ending in `/`.
    pub results_prefix: String,
    pub region: String,
    pub force_path_style: bool,
    /// Run an S3 server inside the orchestrator (s3s-fs, data in this folder) on the
    /// `endpoint` address, for a single machine with no object store.
    pub embedded_root: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisionConfig {
    pub gst_launch: PathBuf,
    pub pipelines_dir: PathBuf,
    /// Extra `GST_PLUGIN_PATH` for the children.
    pub plugin_path: Option<PathBuf>,
    pub backoff_s: Vec<u64>,
    pub stable_after_s: u64,
    pub max_failed_restarts: u32,
    pub stall_timeout_s: u64,
    pub shutdown_grace_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingConfig {
    pub poll_interval_ms: u64,
    pub max_concurrent_orders: usize,
    pub frames_per_order: usize,
    /// Claim orders with a conditional PUT (`If-None-Match: *`) before processing them.
    pub claim: bool,
    /// Seconds after which another orchestrator's claim with no result is taken over.
    pub claim_ttl_s: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecognitionConfig {
    /// OCR of the item labels with the shipped PP-OCR models.
    Labels {
        min_confidence: f32,
        max_edit_distance: usize,
        model_dir: Option<PathBuf>,
        /// ONNX Runtime intra-op threads of the OCR engine.
        threads: usize,
        /// Long side the frame is scaled down to for text detection.
        det_max_side: u32,
    },
    /// An OpenAI-compatible chat-completions endpoint serving a VLM.
    OpenAi {
        endpoint: String,
        model: String,
        api_key_env: Option<String>,
        timeout_ms: u64,
        max_concurrent: usize,
        retries: u32,
        breaker_failures: u32,
        breaker_cooldown_ms: u64,
        /// PEM certificates trusted for an https endpoint besides the system's roots.
        ca_file: Option<PathBuf>,
    },
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        RecognitionConfig::Labels {
            min_confidence: 0.5,
            max_edit_distance: 2,
            model_dir: None,
            threads: DEFAULT_LABELS_THREADS,
            det_max_side: DEFAULT_LABELS_DET_MAX_SIDE,
        }
    }
}

/// The labels engine's threads: an order's frames are read one after another, and two
/// threads halve that wait on a 2-core station box without starving the pipelines (the
/// threads do not spin while idle).
pub const DEFAULT_LABELS_THREADS: usize = 2;
/// Item labels are large print: at a 736 px long side (a 1280x720 frame becomes 736x416)
/// they stay well above what the detector needs, and detection costs half of 960 px.
pub const DEFAULT_LABELS_DET_MAX_SIDE: u32 = 736;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            endpoint: None,
            embedded_root: None,
            bucket: "frames".into(),
            prefix: String::new(),
            results_bucket: None,
            results_prefix: String::new(),
            region: "us-east-1".into(),
            force_path_style: true,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            gst_launch: PathBuf::from("gst-launch-1.0"),
            pipelines_dir: PathBuf::from(DEFAULT_PIPELINES_DIR),
            plugin_path: None,
            backoff_s: vec![2, 4, 8, 16, 32, 60],
            stable_after_s: 60,
            max_failed_restarts: 5,
            stall_timeout_s: 30,
            shutdown_grace_s: 5,
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            poll_interval_ms: 250,
            max_concurrent_orders: 4,
            frames_per_order: 3,
            claim: true,
            claim_ttl_s: 600,
        }
    }
}

/// A configuration error: the field (`stations[1].id`, `http.bind`, a file path...) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    stations: Option<Vec<RawStation>>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    recognition: RawRecognition,
    orders_file: Option<String>,
    inventory_file: Option<String>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    supervision: RawSupervision,
    #[serde(default)]
    processing: RawProcessing,
    #[serde(default)]
    selection: RawSelection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: Option<String>,
    source: Option<String>,
    pipeline: Option<String>,
    roi: Option<String>,
    idle_timeout_ms: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    results_bucket: Option<String>,
    results_prefix: Option<String>,
    region: Option<String>,
    force_path_style: Option<bool>,
    embedded_root: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    bind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervision {
    gst_launch: Option<String>,
    pipelines_dir: Option<String>,
    plugin_path: Option<String>,
    backoff_s: Option<Vec<u64>>,
    stable_after_s: Option<u64>,
    max_failed_restarts: Option<u32>,
    stall_timeout_s: Option<u64>,
    shutdown_grace_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProcessing {
    poll_interval_ms: Option<u64>,
    max_concurrent_orders: Option<usize>,
    frames_per_order: Option<usize>,
    claim: Option<bool>,
    claim_ttl_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelection {
    detector_model: Option<String>,
    classes: Option<Vec<String>>,
    drop_classes: Option<Vec<String>>,
    min_confidence: Option<f32>,
    dominate_fraction: Option<f32>,
    input_size: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecognition {
    backend: Option<String>,
    // labels
    min_confidence: Option<f32>,
    max_edit_distance: Option<usize>,
    model_dir: Option<String>,
    threads: Option<usize>,
    det_max_side: Option<u32>,
    // openai
    endpoint: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    timeout_ms: Option<u64>,
    max_concurrent: Option<usize>,
    retries: Option<u32>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    ca_file: Option<String>,
}

// ---- loading and checking ------------------------------------------------------------

impl Config {
    /// Reads and checks the file; relative paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Config::from_toml_str(&text, &base).map_err(|mut e| {
            if e.field.is_empty() {
                e.field = path.display().to_string();
            }
            e
        })
    }

    /// Parses and checks a configuration; relative paths are resolved against `base_dir`.
    pub fn from_toml_str(s: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(s).map_err(|e| toml_error(s, &e))?;
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base_dir.join(p) }
        };

        // stations
        let raw_stations = raw
            .stations
            .ok_or_else(|| ConfigError::new("stations", "at least one [[stations]] is required"))?;
        if raw_stations.is_empty() {
            return Err(ConfigError::new(
                "stations",
                "at least one [[stations]] is required",
            ));
        }
        let mut seen = HashSet::new();
        let mut stations = Vec::with_capacity(raw_stations.len());
        for (i, st) in raw_stations.into_iter().enumerate() {
            let f = |name: &str| format!("stations[{i}].{name}");
            let id = st.id.ok_or_else(|| ConfigError::new(f("id"), "missing"))?;
            oa_contract::validate_id(oa_contract::IdKind::Station, &id)
                .map_err(|e| ConfigError::new(f("id"), e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err(ConfigError::new(
                    f("id"),
                    format!("duplicate station ID {id:?}"),
                ));
            }
            let source = st
                .source
                .ok_or_else(|| ConfigError::new(f("source"), "missing"))?;
            let (source, default_pipeline) =
                check_source(&source, base_dir).map_err(|m| ConfigError::new(f("source"), m))?;
            let pipeline = st.pipeline.unwrap_or_else(|| default_pipeline.to_owned());
            if pipeline.is_empty()
                || pipeline.contains('/')
                || pipeline.contains('\\')
                || pipeline == "."
                || pipeline == ".."
            {
                return Err(ConfigError::new(
                    f("pipeline"),
                    format!(
                        "{pipeline:?} must be a file name inside supervision.pipelines_dir (e.g. {DEFAULT_RTSP_PIPELINE:?})"
                    ),
                ));
            }
            let roi = match st.roi {
                Some(r) if !r.trim().is_empty() => {
                    Some(check_roi(&r).map_err(|m| ConfigError::new(f("roi"), m))?)
                }
                _ => None,
            };
            let idle_timeout_ms = st.idle_timeout_ms.unwrap_or(10_000);
            if idle_timeout_ms == 0 {
                return Err(ConfigError::new(f("idle_timeout_ms"), "must be > 0"));
            }
            stations.push(StationConfig {
                id,
                source,
                pipeline,
                roi,
                idle_timeout_ms,
            });
        }

        // storage
        let d = StorageConfig::default();
        let rs = raw.storage;
        let endpoint = match rs.endpoint {
            Some(e) if !e.trim().is_empty() => {
                let e = e.trim().trim_end_matches('/').to_owned();
                if !(e.starts_with("http://") || e.starts_with("https://"))
                    || e.len() <= "https://".len()
                {
                    return Err(ConfigError::new(
                        "storage.endpoint",
                        format!("{e:?} must be an http:// or https:// URL"),
                    ));
                }
                Some(e)
            }
            _ => None,
        };
        let bucket = rs.bucket.unwrap_or(d.bucket);
        check_bucket(&bucket).map_err(|m| ConfigError::new("storage.bucket", m))?;
        let results_bucket = match rs.results_bucket {
            Some(b) if !b.is_empty() => {
                check_bucket(&b).map_err(|m| ConfigError::new("storage.results_bucket", m))?;
                Some(b)
            }
            _ => None,
        };
        let prefix = rs.prefix.unwrap_or_default();
        check_prefix(&prefix).map_err(|m| ConfigError::new("storage.prefix", m))?;
        let results_prefix = rs.results_prefix.unwrap_or_default();
        check_prefix(&results_prefix).map_err(|m| ConfigError::new("storage.results_prefix", m))?;
        let region = rs.region.unwrap_or(d.region);
        if region.trim().is_empty() {
            return Err(ConfigError::new("storage.region", "must not be empty"));
        }
        let embedded_root = rs
            .embedded_root
            .filter(|r| !r.is_empty())
            .map(|r| resolve(&r));
        let endpoint = match (&embedded_root, endpoint) {
            (None, e) => e,
            (Some(_), None) => Some(DEFAULT_EMBEDDED_ENDPOINT.to_owned()),
            (Some(_), Some(e)) => {
                embedded_addr(&e).map_err(|m| ConfigError::new("storage.endpoint", m))?;
                Some(e)
            }
        };
        let storage = StorageConfig {
            embedded_root,
            endpoint,
            bucket,
            prefix,
            results_bucket,
            results_prefix,
            region,
            force_path_style: rs.force_path_style.unwrap_or(d.force_path_style),
        };

        let recognition = check_recognition(raw.recognition, &resolve)?;

        let orders_file = match raw.orders_file {
            Some(p) if !p.is_empty() => resolve(&p),
            _ => return Err(ConfigError::new("orders_file", "missing")),
        };
        let inventory_file = match raw.inventory_file {
            Some(p) if !p.is_empty() => resolve(&p),
            _ => return Err(ConfigError::new("inventory_file", "missing")),
        };

        let http = match raw.http.bind {
            Some(b) => HttpConfig {
                bind: b.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "http.bind",
                        format!("{b:?} is not an address:port such as \"127.0.0.1:8080\""),
                    )
                })?,
            },
            None => HttpConfig::default(),
        };

        let d = SupervisionConfig::default();
        let rs = raw.supervision;
        let gst_launch = match rs.gst_launch {
            // A bare command name is looked up on PATH; anything with a separator is a path.
            Some(g) if g.contains('/') => resolve(&g),
            Some(g) if !g.is_empty() => PathBuf::from(g),
            Some(_) => return Err(ConfigError::new("supervision.gst_launch", "empty")),
            None => d.gst_launch,
        };
        let backoff_s = rs.backoff_s.unwrap_or(d.backoff_s);
        if backoff_s.is_empty() {
            return Err(ConfigError::new(
                "supervision.backoff_s",
                "needs at least one delay",
            ));
        }
        let supervision = SupervisionConfig {
            gst_launch,
            pipelines_dir: rs
                .pipelines_dir
                .map(|p| resolve(&p))
                .unwrap_or(d.pipelines_dir),
            plugin_path: rs
                .plugin_path
                .filter(|p| !p.is_empty())
                .map(|p| resolve(&p)),
            backoff_s,
            stable_after_s: rs.stable_after_s.unwrap_or(d.stable_after_s),
            max_failed_restarts: rs.max_failed_restarts.unwrap_or(d.max_failed_restarts),
            stall_timeout_s: positive(
                "supervision.stall_timeout_s",
                rs.stall_timeout_s.unwrap_or(d.stall_timeout_s),
            )?,
            shutdown_grace_s: rs.shutdown_grace_s.unwrap_or(d.shutdown_grace_s),
        };

        let d = ProcessingConfig::default();
        let rp = raw.processing;
        let processing = ProcessingConfig {
            poll_interval_ms: positive(
                "processing.poll_interval_ms",
                rp.poll_interval_ms.unwrap_or(d.poll_interval_ms),
            )?,
            max_concurrent_orders: positive(
                "processing.max_concurrent_orders",
                rp.max_concurrent_orders.unwrap_or(d.max_concurrent_orders) as u64,
            )? as usize,
            frames_per_order: positive(
                "processing.frames_per_order",
                rp.frames_per_order.unwrap_or(d.frames_per_order) as u64,
            )? as usize,
            claim: rp.claim.unwrap_or(d.claim),
            claim_ttl_s: positive(
                "processing.claim_ttl_s",
                rp.claim_ttl_s.unwrap_or(d.claim_ttl_s),
            )?,
        };

        let detector = check_selection(raw.selection, &resolve)?;

        Ok(Config {
            stations,
            storage,
            recognition,
            orders_file,
            inventory_file,
            http,
            supervision,
            processing,
            detector,
        })
    }
}

fn positive(field: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(ConfigError::new(field, "must be > 0"))
    } else {
        Ok(v)
    }
}

/// One line from a TOML syntax or type error: `line N: message`, naming the key when the
/// parser did (unknown fields, wrong types).
fn toml_error(src: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().lines().next().unwrap_or("invalid TOML").trim();
    match e.span() {
        Some(span) => {
            let line = src[..span.start.min(src.len())].matches('\n').count() + 1;
            let key = src
                .get(span.clone())
                .map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty() && s.len() <= 40 && !s.contains('\n'));
            match key {
                Some(k) => ConfigError::new(format!("line {line} ({k})"), msg),
                None => ConfigError::new(format!("line {line}"), msg),
            }
        }
        None => ConfigError::new("config", msg),
    }
}

/// Checks a station source; returns it (relative paths made absolute) and the default
/// pipeline for its kind.
/// Where the embedded S3 server listens when `storage.endpoint` is not set.
pub const DEFAULT_EMBEDDED_ENDPOINT: &str = "http://127.0.0.1:9000";

/// The address an embedded server binds: the endpoint must be `http://IP:PORT`.
pub fn embedded_addr(endpoint: &str) -> Result<SocketAddr, String> {
    endpoint
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            format!(
                "{endpoint:?}: with storage.embedded_root the endpoint must be http://IP:PORT \
                 (the address the embedded S3 server listens on), e.g. {DEFAULT_EMBEDDED_ENDPOINT}"
            )
        })
}

fn check_source(source: &str, base_dir: &Path) -> Result<(String, &'static str), String> {
    let s = source.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "rtsp" | "rtsps" | "rtspt" if !rest.is_empty() => {
                Ok((s.to_owned(), DEFAULT_RTSP_PIPELINE))
            }
            "file" if rest.starts_with('/') => Ok((s.to_owned(), DEFAULT_FILE_PIPELINE)),
            "file" => Err(format!("{s:?}: a file:// URI needs an absolute path")),
            "rtsp" | "rtsps" | "rtspt" => Err(format!("{s:?} has no host")),
            other => Err(format!(
                "unsupported scheme {other:?} in {s:?} (use rtsp://, rtsps://, file:// or a path)"
            )),
        }
    } else {
        let p = Path::new(s);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        Ok((p.display().to_string(), DEFAULT_FILE_PIPELINE))
    }
}

/// `x,y,width,height` with non-negative integers and a non-empty area.
fn check_roi(roi: &str) -> Result<String, String> {
    let parts: Vec<&str> = roi.split(',').map(str::trim).collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums {
        Some(n) if n.len() == 4 && n[2] > 0 && n[3] > 0 => {
            Ok(format!("{},{},{},{}", n[0], n[1], n[2], n[3]))
        }
        _ => Err(format!(
            "{roi:?} must be x,y,width,height in pixels with width and height > 0"
        )),
    }
}

/// The S3 bucket naming rules that matter in practice.
fn check_bucket(b: &str) -> Result<(), String> {
    let ok_chars = b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    let ends_ok = b
        .bytes()
        .next()
        .zip(b.bytes().last())
        .is_some_and(|(f, l)| f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric());
    if (3..=63).contains(&b.len()) && ok_chars && ends_ok {
        Ok(())
    } else {
        Err(format!(
            "{b:?} is not a valid bucket name (3-63 lowercase letters, digits, '-' or '.')"
        ))
    }
}

fn check_prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    if !p.ends_with('/') {
        return Err(format!("{p:?} must be empty or end with '/'"));
    }
    if p.starts_with('/') || p.split('/').any(|seg| seg == "..") {
        return Err(format!("{p:?} must not start with '/' or contain '..'"));
    }
    Ok(())
}

/// The `[selection]` table: no `detector_model`, no detector (and no other field may be
/// set); the model file must exist; `drop_classes` must be a subset of `classes`.
fn check_selection(
    r: RawSelection,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<DetectorConfig>, ConfigError> {
    let model = match r.detector_model {
        Some(m) if !m.trim().is_empty() => resolve(m.trim()),
        Some(_) => return Err(ConfigError::new("selection.detector_model", "empty")),
        None => {
            let set = [
                ("classes", r.classes.is_some()),
                ("drop_classes", r.drop_classes.is_some()),
                ("min_confidence", r.min_confidence.is_some()),
                ("dominate_fraction", r.dominate_fraction.is_some()),
                ("input_size", r.input_size.is_some()),
            ];
            return match set.iter().find(|(_, s)| *s) {
                Some((name, _)) => Err(ConfigError::new(
                    format!("selection.{name}"),
                    "needs selection.detector_model",
                )),
                None => Ok(None),
            };
        }
    };
    if !model.is_file() {
        return Err(ConfigError::new(
            "selection.detector_model",
            format!("{} does not exist", model.display()),
        ));
    }
    let classes = r.classes.unwrap_or_default();
    if classes.is_empty() {
        return Err(ConfigError::new(
            "selection.classes",
            "missing: the model's class names, in its class order",
        ));
    }
    let mut seen = HashSet::new();
    for c in &classes {
        if c.trim().is_empty() {
            return Err(ConfigError::new("selection.classes", "empty class name"));
        }
        if !seen.insert(c) {
            return Err(ConfigError::new(
                "selection.classes",
                format!("duplicate class name {c:?}"),
            ));
        }
    }
    let drop_classes = r.drop_classes.unwrap_or_default();
    if let Some(d) = drop_classes.iter().find(|d| !classes.contains(d)) {
        return Err(ConfigError::new(
            "selection.drop_classes",
            format!("{d:?} is not one of selection.classes {classes:?}"),
        ));
    }
    let d = DetectorConfig::new(model, classes, drop_classes);
    let min_confidence = r.min_confidence.unwrap_or(d.min_confidence);
    if !(min_confidence > 0.0 && min_confidence <= 1.0) {
        return Err(ConfigError::new(
            "selection.min_confidence",
            format!("{min_confidence} is outside 0 (exclusive) ..= 1"),
        ));
    }
    let dominate_fraction = r.dominate_fraction.unwrap_or(d.dominate_fraction);
    if !(dominate_fraction > 0.0 && dominate_fraction <= 1.0) {
        return Err(ConfigError::new(
            "selection.dominate_fraction",
            format!("{dominate_fraction} is outside 0 (exclusive) ..= 1"),
        ));
    }
    let input_size = r.input_size.unwrap_or(d.input_size);
    if !(32..=4096).contains(&input_size) || !input_size.is_multiple_of(32) {
        return Err(ConfigError::new(
            "selection.input_size",
            format!("{input_size} must be a multiple of 32 between 32 and 4096"),
        ));
    }
    Ok(Some(DetectorConfig {
        min_confidence,
        dominate_fraction,
        input_size,
        ..d
    }))
}

fn check_recognition(
    r: RawRecognition,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<RecognitionConfig, ConfigError> {
    let backend = r.backend.as_deref().unwrap_or("labels");
    let only = |backend: &str, fields: &[(&str, bool)]| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(ConfigError::new(
                format!("recognition.{name}"),
                format!("not used by backend {backend:?}"),
            )),
            None => Ok(()),
        }
    };
    match backend {
        "labels" => {
            only(
                "labels",
                &[
                    ("endpoint", r.endpoint.is_some()),
                    ("model", r.model.is_some()),
                    ("api_key_env", r.api_key_env.is_some()),
                    ("timeout_ms", r.timeout_ms.is_some()),
                    ("max_concurrent", r.max_concurrent.is_some()),
                    ("retries", r.retries.is_some()),
                    ("breaker_failures", r.breaker_failures.is_some()),
                    ("breaker_cooldown_ms", r.breaker_cooldown_ms.is_some()),
                    ("ca_file", r.ca_file.is_some()),
                ],
            )?;
            let min_confidence = r.min_confidence.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&min_confidence) {
                return Err(ConfigError::new(
                    "recognition.min_confidence",
                    format!("{min_confidence} is outside 0..=1"),
                ));
            }
            let max_edit_distance = r.max_edit_distance.unwrap_or(2);
            if max_edit_distance > 5 {
                return Err(ConfigError::new(
                    "recognition.max_edit_distance",
                    format!("{max_edit_distance} is more than 5 (would match unrelated names)"),
                ));
            }
            let threads = r.threads.unwrap_or(DEFAULT_LABELS_THREADS);
            if !(1..=32).contains(&threads) {
                return Err(ConfigError::new(
                    "recognition.threads",
                    format!("{threads} is outside 1..=32"),
                ));
            }
            let det_max_side = r.det_max_side.unwrap_or(DEFAULT_LABELS_DET_MAX_SIDE);
            if !(320..=4096).contains(&det_max_side) {
                return Err(ConfigError::new(
                    "recognition.det_max_side",
                    format!("{det_max_side} is outside 320..=4096 pixels"),
                ));
            }
            Ok(RecognitionConfig::Labels {
                min_confidence,
                max_edit_distance,
                model_dir: r.model_dir.filter(|p| !p.is_empty()).map(|p| resolve(&p)),
                threads,
                det_max_side,
            })
        }
        "openai" => {
            only(
                "openai",
                &[
                    ("min_confidence", r.min_confidence.is_some()),
                    ("max_edit_distance", r.max_edit_distance.is_some()),
                    ("model_dir", r.model_dir.is_some()),
                    ("threads", r.threads.is_some()),
                    ("det_max_side", r.det_max_side.is_some()),
                ],
            )?;
            let endpoint = r
                .endpoint
                .map(|e| e.trim().trim_end_matches('/').to_owned())
                .filter(|e| !e.is_empty())
                .ok_or_else(|| ConfigError::new("recognition.endpoint", "missing"))?;
            let https = endpoint.starts_with("https://");
            let host_len = endpoint.len() - if https { "https://" } else { "http://" }.len();
            if !(https || endpoint.starts_with("http://")) || host_len == 0 {
                return Err(ConfigError::new(
                    "recognition.endpoint",
                    format!("{endpoint:?} must be an http:// or https:// URL"),
                ));
            }
            let ca_file = r.ca_file.filter(|p| !p.is_empty()).map(|p| resolve(&p));
            if let Some(ca) = &ca_file {
                if !https {
                    return Err(ConfigError::new(
                        "recognition.ca_file",
                        "only used with an https:// endpoint",
                    ));
                }
                if !ca.is_file() {
                    return Err(ConfigError::new(
                        "recognition.ca_file",
                        format!("{} does not exist", ca.display()),
                    ));
                }
            }
            let model = r
                .model
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| ConfigError::new("recognition.model", "missing"))?;
            let api_key_env = match r.api_key_env {
                Some(v) if v.is_empty() => None,
                Some(v) => {
                    if !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                        return Err(ConfigError::new(
                            "recognition.api_key_env",
                            format!(
                                "{v:?} is not an environment variable name (the key itself never goes in the file)"
                            ),
                        ));
                    }
                    Some(v)
                }
                None => None,
            };
            let breaker_failures = r.breaker_failures.unwrap_or(5);
            if breaker_failures == 0 {
                return Err(ConfigError::new(
                    "recognition.breaker_failures",
                    "must be > 0",
                ));
            }
            Ok(RecognitionConfig::OpenAi {
                endpoint,
                model,
                api_key_env,
                timeout_ms: positive("recognition.timeout_ms", r.timeout_ms.unwrap_or(60_000))?,
                max_concurrent: positive(
                    "recognition.max_concurrent",
                    r.max_concurrent.unwrap_or(2) as u64,
                )? as usize,
                retries: r.retries.unwrap_or(2),
                breaker_failures,
                breaker_cooldown_ms: r.breaker_cooldown_ms.unwrap_or(30_000),
                ca_file,
            })
        }
        other => Err(ConfigError::new(
            "recognition.backend",
            format!("unknown backend {other:?} (use \"labels\" or \"openai\")"),
        )),
    }
}
