//! `[[stations]]`: one table per packing station.

use super::{ConfigError, Resolver};
use crate::supervise::camera::{redact_source, split_userinfo};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// Pipeline file used for `rtsp://` and `rtsps://` sources when none is named.
pub const DEFAULT_RTSP_PIPELINE: &str = "rtsp-camera.pipeline";
/// `reuse_after_s` when none is given: half an hour.
pub const DEFAULT_REUSE_AFTER_S: u32 = 1_800;
/// Pipeline file used for `file://` URIs and plain paths when none is named.
pub const DEFAULT_FILE_PIPELINE: &str = "recorded-file.pipeline";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StationConfig {
    /// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`, unique.
    pub id: String,
    /// `rtsp://` / `rtsps://` URL, `file://` URI or a path (made absolute when relative).
    /// User info in a URL (`rtsp://user:password@cam/...`) reaches a `camerasrc` pipeline
    /// through its environment, not its command line; it is shown as `***`.
    pub source: String,
    /// File name inside `supervision.pipelines_dir`; empty: the default for the source.
    pub pipeline: String,
    /// OCR region `x,y,width,height` (checked by the rule `ocrsegment` applies);
    /// `None` for the whole frame.
    pub roi: Option<String>,
    pub idle_timeout_ms: u32,
    /// Seconds after an order's last frame from which its number, seen again at this
    /// station, is a new order (the till reused it), stored as `{order}.{n}`; sooner, the
    /// slip was only out of view and the order continues. 0: a number always continues.
    /// Default 1800 s, or one second more than the idle timeout when that is longer.
    pub reuse_after_s: u32,
    /// Name of a variable of the orchestrator's environment holding the camera's user
    /// name (passed to the pipeline as `OA_CAMERA_USER`); must be set.
    pub camera_user_env: Option<String>,
    /// Name of a variable of the orchestrator's environment holding the camera's password
    /// (passed to the pipeline as `OA_CAMERA_PASSWORD`); must be set.
    pub camera_password_env: Option<String>,
    /// A recorded file: `true` replays it whenever it ends; `false` (default) plays it
    /// once, and the station is `finished` at its end. Not used for cameras.
    #[serde(rename = "loop")]
    pub replay: bool,
}

impl Default for StationConfig {
    fn default() -> Self {
        StationConfig {
            id: String::new(),
            source: String::new(),
            pipeline: String::new(),
            roi: None,
            idle_timeout_ms: 10_000,
            reuse_after_s: DEFAULT_REUSE_AFTER_S,
            camera_user_env: None,
            camera_password_env: None,
            replay: false,
        }
    }
}

impl StationConfig {
    /// Whether the source is a recording to play once (a camera never ends on purpose).
    pub fn plays_once(&self) -> bool {
        let scheme = self
            .source
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        let camera = matches!(scheme.as_deref(), Some("rtsp" | "rtsps" | "rtspt"));
        !(self.replay || camera)
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
        let idle_s = self.idle_timeout_ms.div_ceil(1_000);
        if self.reuse_after_s == DEFAULT_REUSE_AFTER_S && DEFAULT_REUSE_AFTER_S <= idle_s {
            // A configuration from before reuse_after_s with a long idle timeout still loads.
            self.reuse_after_s = idle_s + 1;
        }
        if self.reuse_after_s != 0
            && u64::from(self.reuse_after_s) * 1_000 <= u64::from(self.idle_timeout_ms)
        {
            return Err(ConfigError::new(
                f("reuse_after_s"),
                format!(
                    "{} s would split an order whose slip is out of view for less than \
                     idle_timeout_ms ({} ms); make it longer, or 0 to never treat a number \
                     as reused",
                    self.reuse_after_s, self.idle_timeout_ms
                ),
            ));
        }
        let userinfo = split_userinfo(&self.source).1;
        let in_source = (
            userinfo.as_ref().is_some_and(|u| !u.user.is_empty()),
            userinfo.as_ref().is_some_and(|u| u.password.is_some()),
        );
        for (field, name, what, in_source) in [
            (
                "camera_user_env",
                &mut self.camera_user_env,
                "user name",
                in_source.0,
            ),
            (
                "camera_password_env",
                &mut self.camera_password_env,
                "password",
                in_source.1,
            ),
        ] {
            *name = name.take().filter(|n| !n.trim().is_empty());
            if let Some(n) = name {
                check_camera_env(n, what, in_source, &self.source)
                    .map_err(|m| ConfigError::new(f(field), m))?;
            }
        }
        Ok(())
    }
}

/// A `camera_*_env` setting: the name of a variable that is set, for a value the source
/// does not carry as well.
fn check_camera_env(name: &str, what: &str, in_source: bool, source: &str) -> Result<(), String> {
    if name.contains(['=', '\0']) {
        return Err(format!(
            "{name:?} is not an environment variable name (the variable's name goes here, \
             not the {what})"
        ));
    }
    if in_source {
        return Err(format!(
            "source {} already carries a {what}: keep it in one place (the environment \
             keeps it out of the configuration file)",
            redact_source(source)
        ));
    }
    match std::env::var_os(name) {
        None => Err(format!(
            "environment variable {name} (the camera's {what}) is not set"
        )),
        Some(v) if v.to_str().is_none() => Err(format!(
            "environment variable {name} (the camera's {what}) is not valid UTF-8"
        )),
        Some(_) => Ok(()),
    }
}

/// Checks a station source; returns it (relative paths made absolute) and the default
/// pipeline for its kind.
fn check_source(source: &str, base_dir: &Path) -> Result<(String, &'static str), String> {
    let s = source.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let shown = redact_source(s);
    if let Some((scheme, rest)) = s.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "rtsp" | "rtsps" | "rtspt" if !rest.is_empty() => {
                Ok((s.to_owned(), DEFAULT_RTSP_PIPELINE))
            }
            "file" if rest.starts_with('/') => Ok((s.to_owned(), DEFAULT_FILE_PIPELINE)),
            "file" => Err(format!("{shown:?}: a file:// URI needs an absolute path")),
            "rtsp" | "rtsps" | "rtspt" => Err(format!("{shown:?} has no host")),
            other => Err(format!(
                "unsupported scheme {other:?} in {shown:?} (use rtsp://, rtsps://, file:// or a path)"
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn load(station: &str) -> Result<Config, String> {
        let toml = format!(
            "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
             [[stations]]\nid = \"station_1\"\n{station}\n"
        );
        Config::from_toml_str(&toml, Path::new("/etc/oa")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_named_camera_variable_must_be_set() {
        let err = load(
            "source = \"rtsp://cam/x\"\ncamera_user_env = \"OA_TEST_STATIONS_UNSET_VARIABLE\"",
        )
        .unwrap_err();
        assert!(
            err.starts_with("stations[0].camera_user_env: ")
                && err.contains("OA_TEST_STATIONS_UNSET_VARIABLE")
                && err.contains("not set"),
            "{err}"
        );
        let err = load(
            "source = \"rtsp://cam/x\"\ncamera_password_env = \"OA_TEST_STATIONS_UNSET_VARIABLE\"",
        )
        .unwrap_err();
        assert!(
            err.starts_with("stations[0].camera_password_env: "),
            "{err}"
        );
        // PATH is set wherever the tests run.
        let c = load("source = \"rtsp://cam/x\"\ncamera_user_env = \"PATH\"").unwrap();
        assert_eq!(c.stations[0].camera_user_env.as_deref(), Some("PATH"));
    }

    #[test]
    fn a_credential_is_kept_in_one_place_and_errors_show_no_secret() {
        let err =
            load("source = \"rtsp://u:secret@cam/x\"\ncamera_password_env = \"PATH\"").unwrap_err();
        assert!(
            err.starts_with("stations[0].camera_password_env: "),
            "{err}"
        );
        assert!(
            err.contains("rtsp://***@cam/x") && !err.contains("secret"),
            "{err}"
        );
        // A user name in the source and the password from the environment is fine.
        load("source = \"rtsp://viewer@cam/x\"\ncamera_password_env = \"PATH\"").unwrap();
        let err = load("source = \"ftp://u:secret@cam/x\"").unwrap_err();
        assert!(
            err.contains("ftp://***@cam/x") && !err.contains("secret"),
            "{err}"
        );
    }
}
