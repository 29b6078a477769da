//! The orchestrator's configuration: one TOML file (see `orchestrator.example.toml`).
//!
//! The file is deserialised straight into the typed sections below (`#[serde(default)]`,
//! `deny_unknown_fields`): each default is stated once, in the section's `Default`. Then
//! [`Config::validate`] checks every section up front, so that a running orchestrator
//! never meets a bad setting; every error is one line that starts with the field it is
//! about, e.g. `stations[1].id: station ID may only hold letters, digits, '_' and '-'`.
//! Relative paths are resolved against the folder of the configuration file.
//!
//! Older files keep loading: the flat `[recognition]` keys of the first release (e.g.
//! `recognition.endpoint`) are moved to their backend's table (`recognition.openai.endpoint`)
//! with a warning in [`Config::warnings`].

mod events;
mod legacy;
mod recognition;
mod retention;
mod runtime;
mod selection;
mod stations;
mod storage;

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub use events::{EventsConfig, MqttConfig, WebhookConfig};
pub use recognition::{
    Backend, DEFAULT_LABELS_DET_MAX_SIDE, DEFAULT_LABELS_THREADS, LabelsConfig, OpenAiConfig,
    RecognitionConfig, StructuredOutput,
};
pub use retention::{MAX_RETENTION_BATCH, RetentionConfig};
pub use runtime::{HttpConfig, ProcessingConfig, SupervisionConfig};
pub use selection::SelectionConfig;
pub use stations::{
    DEFAULT_FILE_PIPELINE, DEFAULT_REUSE_AFTER_S, DEFAULT_RTSP_PIPELINE, StationConfig,
};
pub use storage::{DEFAULT_EMBEDDED_ENDPOINT, StorageConfig, embedded_addr};

/// The pipelines shipped with the project: where `meson install` put them
/// (`OA_DEFAULT_PIPELINES_DIR` at build time), else the checkout's `pipelines/`.
pub const DEFAULT_PIPELINES_DIR: &str = match option_env!("OA_DEFAULT_PIPELINES_DIR") {
    Some(dir) => dir,
    None => concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines"),
};

/// Where `meson install` put the GStreamer plugin (`OA_DEFAULT_PLUGIN_PATH` at build
/// time), given to the pipelines when `supervision.plugin_path` is not set: an install
/// under a prefix GStreamer does not search still finds its elements. `None`: a checkout
/// build, whose plugin is found through `GST_PLUGIN_PATH` or `plugin_path`.
pub const DEFAULT_PLUGIN_PATH: Option<&str> = option_env!("OA_DEFAULT_PLUGIN_PATH");

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub stations: Vec<StationConfig>,
    pub storage: StorageConfig,
    pub recognition: RecognitionConfig,
    /// Expected items per order.
    pub orders_file: PathBuf,
    /// Item names and aliases.
    pub inventory_file: PathBuf,
    pub http: HttpConfig,
    pub supervision: SupervisionConfig,
    pub processing: ProcessingConfig,
    /// The optional object detector for frame selection.
    pub selection: SelectionConfig,
    /// Webhooks and MQTT.
    pub events: EventsConfig,
    /// How long frames, markers, results and claims are kept.
    pub retention: RetentionConfig,
    /// Deprecated forms found while loading, each naming its replacement.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// A configuration error: the field (`stations[1].id`, `http.bind`, a file path...) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

/// Relative paths in the file are relative to the file's folder.
pub(crate) struct Resolver<'a>(&'a Path);

impl Resolver<'_> {
    pub(crate) fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.0.join(p)
        }
    }
}

impl Config {
    /// Advice on a valid configuration that costs more than it needs to: said by
    /// `check-config` and at start, never refused.
    pub fn advice(&self) -> Vec<String> {
        self.stations
            .iter()
            .enumerate()
            .filter(|(_, s)| s.roi.is_none())
            .map(|(i, s)| {
                format!(
                    "stations[{i}].roi: not set, so station {} runs OCR on the whole frame \
                     (about 8x the CPU of the slip's region): with a slip in view, \
                     `orchestrator calibrate --config FILE --station {}` proposes the \
                     roi = \"x,y,width,height\" line",
                    s.id, s.id
                )
            })
            .collect()
    }

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
        let mut config = Config::parse(s)?;
        config.validate(base_dir)?;
        Ok(config)
    }

    /// Deserialises without checking. A file in today's form is read from its text, so
    /// that type errors and unknown keys carry their line; a file with deprecated keys is
    /// rewritten to today's form first.
    fn parse(s: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(s).map_err(|e| toml_error(s, &e))?;
        let (table, warnings) = legacy::upgrade(table)?;
        let mut config: Config = match warnings.is_empty() {
            true => toml::from_str(s).map_err(|e| toml_error(s, &e))?,
            false => toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().trim()))?,
        };
        config.warnings = warnings;
        Ok(config)
    }

    /// Checks every section and resolves relative paths against `base_dir`.
    pub fn validate(&mut self, base_dir: &Path) -> Result<(), ConfigError> {
        let resolve = Resolver(base_dir);
        stations::validate(&mut self.stations, &resolve)?;
        self.storage.validate(&resolve)?;
        self.recognition.validate(&resolve)?;
        if self.orders_file.as_os_str().is_empty() {
            return Err(ConfigError::new("orders_file", "missing"));
        }
        self.orders_file = resolve.path(&self.orders_file);
        if self.inventory_file.as_os_str().is_empty() {
            return Err(ConfigError::new("inventory_file", "missing"));
        }
        self.inventory_file = resolve.path(&self.inventory_file);
        self.supervision.validate(&resolve)?;
        self.processing.validate()?;
        self.selection.validate(&resolve)?;
        self.events.validate()?;
        self.retention.validate()?;
        self.http.validate(&resolve)?;
        if !self.supervision.enabled && !self.processing.enabled {
            return Err(ConfigError::new(
                "processing.enabled",
                "with supervision.enabled = false too, this orchestrator would do nothing: \
                 enable one of them",
            ));
        }
        Ok(())
    }

    /// The frame-selection detector, when `[selection]` names a model.
    pub fn detector(&self) -> Option<crate::detector::DetectorConfig> {
        self.selection.detector()
    }
}

pub(crate) fn positive(field: &str, v: u64) -> Result<u64, ConfigError> {
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
    let line_of =
        |span: &std::ops::Range<usize>| src[..span.start.min(src.len())].matches('\n').count() + 1;
    // Our own value parsers (e.g. `http.bind`) put the field first: keep it first.
    if let Some((field, rest)) = msg.split_once(": ")
        && !field.is_empty()
        && field
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._[]".contains(&c))
    {
        let at = e
            .span()
            .map(|s| format!(" (line {})", line_of(&s)))
            .unwrap_or_default();
        return ConfigError::new(field, format!("{rest}{at}"));
    }
    match e.span() {
        Some(span) => {
            let line = line_of(&span);
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
