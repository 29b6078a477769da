//! `[storage]`: where frames, markers and results live.

use super::{ConfigError, Resolver};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the embedded S3 server listens when `storage.endpoint` is not set.
pub const DEFAULT_EMBEDDED_ENDPOINT: &str = "http://127.0.0.1:9000";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl StorageConfig {
    pub(super) fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let endpoint = match self.endpoint.take() {
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
        check_bucket(&self.bucket).map_err(|m| ConfigError::new("storage.bucket", m))?;
        self.results_bucket = self.results_bucket.take().filter(|b| !b.is_empty());
        if let Some(b) = &self.results_bucket {
            check_bucket(b).map_err(|m| ConfigError::new("storage.results_bucket", m))?;
        }
        check_prefix(&self.prefix).map_err(|m| ConfigError::new("storage.prefix", m))?;
        check_prefix(&self.results_prefix)
            .map_err(|m| ConfigError::new("storage.results_prefix", m))?;
        if self.region.trim().is_empty() {
            return Err(ConfigError::new("storage.region", "must not be empty"));
        }
        self.embedded_root = self
            .embedded_root
            .take()
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| resolve.path(&r));
        self.endpoint = match (&self.embedded_root, endpoint) {
            (None, e) => e,
            (Some(_), None) => Some(DEFAULT_EMBEDDED_ENDPOINT.to_owned()),
            (Some(_), Some(e)) => {
                embedded_addr(&e).map_err(|m| ConfigError::new("storage.endpoint", m))?;
                Some(e)
            }
        };
        Ok(())
    }

    /// The bucket results are written to.
    pub fn results_bucket(&self) -> &str {
        self.results_bucket.as_deref().unwrap_or(&self.bucket)
    }
}

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
