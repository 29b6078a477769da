//! `[recognition]`: which backend reads the packed items, and one table per backend
//! (`[recognition.labels]`, `[recognition.openai]`). Both tables may be present; only the
//! chosen backend's is checked and used, so switching is a one-word edit.

use super::{ConfigError, Resolver, positive};
use serde::Deserialize;
use std::path::PathBuf;

/// The labels engine's threads: an order's frames are read one after another, and two
/// threads halve that wait on a 2-core station box without starving the pipelines (the
/// threads do not spin while idle).
pub const DEFAULT_LABELS_THREADS: usize = 2;
/// Item labels are large print: at a 736 px long side (a 1280x720 frame becomes 736x416)
/// they stay well above what the detector needs, and detection costs half of 960 px.
pub const DEFAULT_LABELS_DET_MAX_SIDE: u32 = 736;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// OCR of the item labels with the shipped PP-OCR models.
    #[default]
    Labels,
    /// An OpenAI-compatible chat-completions endpoint serving a VLM.
    #[serde(rename = "openai")]
    OpenAi,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Labels => "labels",
            Backend::OpenAi => "openai",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecognitionConfig {
    /// `"labels"` or `"openai"`; checked in [`RecognitionConfig::validate`] so that the
    /// error names the field.
    #[serde(rename = "backend")]
    backend_name: Option<String>,
    #[serde(skip)]
    pub backend: Backend,
    pub labels: LabelsConfig,
    pub openai: OpenAiConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// Lines read with a lower confidence (0..=1) are ignored.
    pub min_confidence: f32,
    /// At most this many edits when matching a label to an inventory name (0..=5).
    pub max_edit_distance: usize,
    /// Folder with the PP-OCR models; `None`: `$OA_MODEL_DIR`, else the built-in path.
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads of the OCR engine.
    pub threads: usize,
    /// Long side the frame is scaled down to for text detection.
    pub det_max_side: u32,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            min_confidence: 0.5,
            max_edit_distance: 2,
            model_dir: None,
            threads: DEFAULT_LABELS_THREADS,
            det_max_side: DEFAULT_LABELS_DET_MAX_SIDE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// `http://` or `https://` base URL (no trailing `/`).
    pub endpoint: String,
    pub model: String,
    /// Name of the environment variable holding the API key; the key never goes in the file.
    pub api_key_env: Option<String>,
    /// Per attempt: connect, send, whole reply.
    pub timeout_ms: u64,
    /// Requests in flight.
    pub max_concurrent: usize,
    /// Extra attempts on timeouts, connection errors, 429 and 5xx.
    pub retries: u32,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls fast.
    pub breaker_cooldown_ms: u64,
    /// PEM certificates trusted for an https endpoint besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Whether the reply is constrained to a JSON schema (`response_format`, item names
    /// from the inventory); see [`StructuredOutput`].
    pub structured_output: StructuredOutput,
    /// Sent as `chat_template_kwargs` (vLLM, SGLang, llama.cpp): for a reasoning model
    /// `{ enable_thinking = false }`, else it may spend its tokens in a `<think>` block.
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// `max_tokens` of each request.
    pub max_tokens: u32,
    /// Frames whose long side is larger are scaled down to it before they are sent (0:
    /// sent as stored).
    pub image_max_side: u32,
    /// JPEG quality of a scaled frame (1..=100).
    pub image_quality: u8,
    /// A text file with the store's own instructions, replacing the built-in ones; the
    /// inventory, its aliases and the answer's form are always added after them.
    pub prompt_file: Option<PathBuf>,
    /// A JSON file of worked examples (photos and the right answer), sent before every
    /// order; see `recognize::prompt`.
    pub examples_file: Option<PathBuf>,
}

/// `recognition.openai.structured_output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// Ask for the schema; a server that refuses `response_format` (a 400 naming it) is
    /// asked without it from then on, logged once.
    #[default]
    Auto,
    /// Always ask for the schema; a refusal is an error.
    JsonSchema,
    /// Never: JSON is asked for in the prompt only.
    Off,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            endpoint: String::new(),
            model: String::new(),
            api_key_env: None,
            timeout_ms: 60_000,
            max_concurrent: 2,
            retries: 2,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            ca_file: None,
            structured_output: StructuredOutput::Auto,
            chat_template_kwargs: None,
            max_tokens: 512,
            image_max_side: 768,
            image_quality: 85,
            prompt_file: None,
            examples_file: None,
        }
    }
}

impl RecognitionConfig {
    /// A configuration for `backend` with every other setting at its default.
    pub fn with_backend(backend: Backend) -> Self {
        RecognitionConfig {
            backend_name: Some(backend.as_str().to_owned()),
            backend,
            ..Default::default()
        }
    }

    pub(super) fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        self.backend = match self.backend_name.as_deref() {
            None | Some("labels") => Backend::Labels,
            Some("openai") => Backend::OpenAi,
            Some(other) => {
                return Err(ConfigError::new(
                    "recognition.backend",
                    format!("unknown backend {other:?} (use \"labels\" or \"openai\")"),
                ));
            }
        };
        match self.backend {
            Backend::Labels => self.labels.validate(resolve),
            Backend::OpenAi => self.openai.validate(resolve),
        }
    }
}

impl LabelsConfig {
    fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let f = |name: &str| format!("recognition.labels.{name}");
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(ConfigError::new(
                f("min_confidence"),
                format!("{} is outside 0..=1", self.min_confidence),
            ));
        }
        if self.max_edit_distance > 5 {
            return Err(ConfigError::new(
                f("max_edit_distance"),
                format!(
                    "{} is more than 5 (would match unrelated names)",
                    self.max_edit_distance
                ),
            ));
        }
        if !(1..=32).contains(&self.threads) {
            return Err(ConfigError::new(
                f("threads"),
                format!("{} is outside 1..=32", self.threads),
            ));
        }
        if !(320..=4096).contains(&self.det_max_side) {
            return Err(ConfigError::new(
                f("det_max_side"),
                format!("{} is outside 320..=4096 pixels", self.det_max_side),
            ));
        }
        self.model_dir = self
            .model_dir
            .take()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| resolve.path(&p));
        Ok(())
    }
}

impl OpenAiConfig {
    fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let f = |name: &str| format!("recognition.openai.{name}");
        let endpoint = self.endpoint.trim().trim_end_matches('/').to_owned();
        if endpoint.is_empty() {
            return Err(ConfigError::new(f("endpoint"), "missing"));
        }
        let https = endpoint.starts_with("https://");
        let scheme_len = if https { "https://" } else { "http://" }.len();
        if !(https || endpoint.starts_with("http://")) || endpoint.len() <= scheme_len {
            return Err(ConfigError::new(
                f("endpoint"),
                format!("{endpoint:?} must be an http:// or https:// URL"),
            ));
        }
        self.endpoint = endpoint;
        self.ca_file = self
            .ca_file
            .take()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| resolve.path(&p));
        if let Some(ca) = &self.ca_file {
            if !https {
                return Err(ConfigError::new(
                    f("ca_file"),
                    "only used with an https:// endpoint",
                ));
            }
            if !ca.is_file() {
                return Err(ConfigError::new(
                    f("ca_file"),
                    format!("{} does not exist", ca.display()),
                ));
            }
        }
        if self.model.trim().is_empty() {
            return Err(ConfigError::new(f("model"), "missing"));
        }
        self.api_key_env = self.api_key_env.take().filter(|v| !v.is_empty());
        if let Some(v) = &self.api_key_env
            && !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(ConfigError::new(
                f("api_key_env"),
                format!(
                    "{v:?} is not an environment variable name (the key itself never goes in the file)"
                ),
            ));
        }
        positive(&f("timeout_ms"), self.timeout_ms)?;
        positive(&f("max_concurrent"), self.max_concurrent as u64)?;
        positive(&f("breaker_failures"), u64::from(self.breaker_failures))?;
        if self.image_max_side != 0 && !(64..=8192).contains(&self.image_max_side) {
            return Err(ConfigError::new(
                f("image_max_side"),
                format!(
                    "{} is outside 64..=8192 pixels (0 sends frames as stored)",
                    self.image_max_side
                ),
            ));
        }
        if !(1..=100).contains(&self.image_quality) {
            return Err(ConfigError::new(
                f("image_quality"),
                format!("{} is outside 1..=100", self.image_quality),
            ));
        }
        for (name, file) in [
            ("prompt_file", &mut self.prompt_file),
            ("examples_file", &mut self.examples_file),
        ] {
            *file = file
                .take()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| resolve.path(&p));
            if let Some(p) = file.as_ref()
                && !p.is_file()
            {
                return Err(ConfigError::new(
                    f(name),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
        if !(16..=32_768).contains(&self.max_tokens) {
            return Err(ConfigError::new(
                f("max_tokens"),
                format!("{} is outside 16..=32768", self.max_tokens),
            ));
        }
        Ok(())
    }
}
