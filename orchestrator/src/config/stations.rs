//! `[[stations]]`: one table per packing station.

use super::{ConfigError, Resolver};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// Pipeline file used for `rtsp://` and `rtsps://` sources when none is named.
pub const DEFAULT_RTSP_PIPELINE: &str = "rtsp-camera.pipeline";
/// Pipeline file used for `file://` URIs and plain paths when none is named.
pub const DEFAULT_FILE_PIPELINE: &str = "recorded-file.pipeline";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StationConfig {
    /// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`, unique.
    pub id: String,
    /// `rtsp://` / `rtsps://` URL, `file://` URI or a path (made absolute when relative).
    pub source: String,
    /// File name inside `supervision.pipelines_dir`; empty: the default for the source.
    pub pipeline: String,
    /// OCR region `x,y,width,height` (checked by the rule `ocrsegment` applies);
    /// `None` for the whole frame.
    pub roi: Option<String>,
    pub idle_timeout_ms: u32,
}

impl Default for StationConfig {
    fn default() -> Self {
        StationConfig {
            id: String::new(),
            source: String::new(),
            pipeline: String::new(),
            roi: None,
            idle_timeout_ms: 10_000,
        }
    }
}

pub(super) fn validate(
    stations: &mut [StationConfig],
    resolve: &Resolver<'_>,
) -> Result<(), ConfigError> {
    if stations.is_empty() {
        return Err(ConfigError::new(
            "stations",
            "at least one [[stations]] is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, st) in stations.iter_mut().enumerate() {
        st.validate(i, resolve)?;
        if !seen.insert(st.id.clone()) {
            return Err(ConfigError::new(
                format!("stations[{i}].id"),
                format!("duplicate station ID {:?}", st.id),
            ));
        }
    }
    Ok(())
}

impl StationConfig {
    fn validate(&mut self, i: usize, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let f = |name: &str| format!("stations[{i}].{name}");
        if self.id.is_empty() {
            return Err(ConfigError::new(f("id"), "missing"));
        }
        oa_contract::validate_id(oa_contract::IdKind::Station, &self.id)
            .map_err(|e| ConfigError::new(f("id"), e.to_string()))?;
        if self.source.is_empty() {
            return Err(ConfigError::new(f("source"), "missing"));
        }
        let (source, default_pipeline) =
            check_source(&self.source, resolve.0).map_err(|m| ConfigError::new(f("source"), m))?;
        self.source = source;
        if self.pipeline.is_empty() {
            self.pipeline = default_pipeline.to_owned();
        }
        let p = &self.pipeline;
        if p.contains('/') || p.contains('\\') || p == "." || p == ".." {
            return Err(ConfigError::new(
                f("pipeline"),
                format!(
                    "{p:?} must be a file name inside supervision.pipelines_dir (e.g. {DEFAULT_RTSP_PIPELINE:?})"
                ),
            ));
        }
        self.roi = match self.roi.take() {
            Some(r) if !r.trim().is_empty() => Some(
                oa_contract::Roi::parse(&r)
                    .map_err(|e| ConfigError::new(f("roi"), e.to_string()))?
                    .to_string(),
            ),
            _ => None,
        };
        if self.idle_timeout_ms == 0 {
            return Err(ConfigError::new(f("idle_timeout_ms"), "must be > 0"));
        }
        Ok(())
    }
}

/// Checks a station source; returns it (relative paths made absolute) and the default
/// pipeline for its kind.
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
