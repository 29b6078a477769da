//! `[http]`, `[supervision]` and `[processing]`: how the orchestrator itself runs.

use super::{ConfigError, DEFAULT_PIPELINES_DIR, Resolver, positive};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `address:port` of the API, health and metrics.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// A file of API tokens, `read <token>` or `write <token>` per line (see
    /// `http::auth`); relative to the configuration file's folder. The tokens themselves
    /// never go in the configuration file.
    pub tokens_file: Option<PathBuf>,
    /// Serve the API without tokens on an address beyond loopback (refused otherwise).
    pub allow_anonymous: bool,
    /// PEM certificate chain and private key: HTTPS instead of HTTP (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest recording `POST /api/videos` takes, MiB; 0 turns the endpoint off.
    pub max_video_mb: u32,
}

/// `http.max_video_mb`'s default: about an hour of a 720p camera's H.264.
pub const DEFAULT_MAX_VIDEO_MB: u32 = 1024;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens_file: None,
            allow_anonymous: false,
            tls_cert: None,
            tls_key: None,
            max_video_mb: DEFAULT_MAX_VIDEO_MB,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let set = |p: &Option<PathBuf>| {
            p.as_ref()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| resolve.path(p))
        };
        self.tls_cert = set(&self.tls_cert);
        self.tls_key = set(&self.tls_key);
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(ConfigError::new(
                "http.tls_key",
                "missing: tls_cert needs its private key",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "http.tls_cert",
                "missing: tls_key needs its certificate",
            )),
            _ => Ok(()),
        }
    }

    /// `tokens_file`, resolved against `config_dir`; `None` when not set (or empty).
    pub fn tokens_file_in(&self, config_dir: &Path) -> Option<PathBuf> {
        self.tokens_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| Resolver(config_dir).path(p))
    }

    /// The bind rule: beyond loopback, an API without tokens is refused unless
    /// `allow_anonymous`; on loopback it stays open.
    pub fn check_access(&self, have_tokens: bool) -> Result<(), ConfigError> {
        if have_tokens || self.allow_anonymous || self.bind.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        Err(ConfigError::new(
            "http.bind",
            format!(
                "{} is not a loopback address and no API tokens are configured: anyone who \
                 can reach it could read the orders and their photos; set \
                 OA_API_READ_TOKENS / OA_API_WRITE_TOKENS or http.tokens_file, or \
                 http.allow_anonymous = true to serve it without tokens anyway",
                self.bind
            ),
        ))
    }
}

/// Parsed here rather than by serde's `SocketAddr` so that the error names the field and
/// shows what is expected.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "http.bind: {s:?} is not an address:port such as \"127.0.0.1:8080\""
        ))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// `false`: this orchestrator starts no pipelines (a replica that only processes the
    /// orders other orchestrators' pipelines store, see `processing.claim`).
    pub enabled: bool,
    /// A bare command name is looked up on PATH; anything with a `/` is a path.
    pub gst_launch: PathBuf,
    pub pipelines_dir: PathBuf,
    /// Extra `GST_PLUGIN_PATH` for the children; default: where `meson install` put the
    /// plugin (none for a checkout build).
    pub plugin_path: Option<PathBuf>,
    /// Delays between restarts of a failing pipeline; the last one repeats.
    pub backoff_s: Vec<u64>,
    /// A pipeline that ran this long is healthy again: the backoff starts over.
    pub stable_after_s: u64,
    pub max_failed_restarts: u32,
    /// A running pipeline that reports no progress for this long is restarted.
    pub stall_timeout_s: u64,
    /// On shutdown, how long after SIGINT (EOS) before a pipeline is killed.
    pub shutdown_grace_s: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            enabled: true,
            gst_launch: PathBuf::from("gst-launch-1.0"),
            pipelines_dir: PathBuf::from(DEFAULT_PIPELINES_DIR),
            plugin_path: super::DEFAULT_PLUGIN_PATH.map(PathBuf::from),
            backoff_s: vec![2, 4, 8, 16, 32, 60],
            stable_after_s: 60,
            max_failed_restarts: 5,
            stall_timeout_s: 30,
            shutdown_grace_s: 5,
        }
    }
}

impl SupervisionConfig {
    pub(super) fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        if self.gst_launch.as_os_str().is_empty() {
            return Err(ConfigError::new("supervision.gst_launch", "empty"));
        }
        if self.gst_launch.to_string_lossy().contains('/') {
            self.gst_launch = resolve.path(&self.gst_launch);
        }
        self.pipelines_dir = resolve.path(&self.pipelines_dir);
        self.plugin_path = self
            .plugin_path
            .take()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| resolve.path(&p));
        if self.backoff_s.is_empty() {
            return Err(ConfigError::new(
                "supervision.backoff_s",
                "needs at least one delay",
            ));
        }
        positive("supervision.stall_timeout_s", self.stall_timeout_s)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    /// `false`: this orchestrator only runs its stations' pipelines and leaves their
    /// orders to replicas that process them.
    pub enabled: bool,
    /// How often the bucket is polled for new markers.
    pub poll_interval_ms: u64,
    pub max_concurrent_orders: usize,
    pub frames_per_order: usize,
    /// Claim orders with a conditional PUT (`If-None-Match: *`) before processing them.
    pub claim: bool,
    /// Seconds after which another orchestrator's claim with no result is taken over.
    pub claim_ttl_s: u64,
    /// Seconds for which recognition failures that may pass (connection refused, timeout,
    /// 429/5xx, breaker open) are retried before a final `recognition-failed`.
    pub recognition_retry_s: u64,
    /// Seconds beyond a station's idle timeout after which an order with frames and no
    /// marker (its pipeline died mid-order) is finalised by the orchestrator as
    /// `recovered`; 0 never.
    pub orphan_grace_s: u64,
    /// Seconds a recognised order whose expected items are not known yet (neither through
    /// the API nor in `orders_file`) waits for them as `awaiting-order` before it becomes
    /// `unknown-order`; 0 never waits.
    pub expected_wait_s: u64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            enabled: true,
            poll_interval_ms: 250,
            max_concurrent_orders: 4,
            frames_per_order: 3,
            claim: true,
            claim_ttl_s: 600,
            recognition_retry_s: 900,
            orphan_grace_s: 60,
            expected_wait_s: 300,
        }
    }
}

impl ProcessingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("processing.poll_interval_ms", self.poll_interval_ms)?;
        positive(
            "processing.max_concurrent_orders",
            self.max_concurrent_orders as u64,
        )?;
        positive("processing.frames_per_order", self.frames_per_order as u64)?;
        positive("processing.claim_ttl_s", self.claim_ttl_s)?;
        Ok(())
    }
}
