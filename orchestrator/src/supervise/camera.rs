//! Camera credentials: how a station's user name and password reach its pipeline without
//! being on its command line (`/proc/PID/cmdline` is readable by every local user).
//!
//! A pipeline that uses `camerasrc` gets `{source}` without its user info; the user name
//! and password (percent-decoded from the source's `user:password@`, or read from the
//! orchestrator's environment variables named by the station's `camera_user_env` and
//! `camera_password_env`) are given to the child as [`USER_VAR`] and [`PASSWORD_VAR`],
//! which `camerasrc` reads by default. A pipeline that does not use `camerasrc` (an older
//! user template with `rtspsrc location="{source}"`) still gets the full source, with a
//! warning at start.
//!
//! Wherever a source is shown (log lines, errors, the lines of a child's output), its
//! user info is `***` ([`redact_source`], [`redact_urls`]).

pub use oa_contract::camera::{
    PASSWORD_VAR, USER_VAR, Userinfo, redact_source, redact_urls, split_userinfo,
};
/// The element that reads them.
pub const ELEMENT: &str = "camerasrc";

/// Where a station's camera credentials come from besides the user info of its source:
/// names of variables of the orchestrator's environment (`camera_user_env`,
/// `camera_password_env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraEnv {
    pub user_env: Option<String>,
    pub password_env: Option<String>,
}

/// The value of the orchestrator's environment variable `name` (field names the setting
/// in errors).
fn read_var(field: &str, name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| match e {
        std::env::VarError::NotPresent => {
            format!("{field}: environment variable {name} is not set")
        }
        std::env::VarError::NotUnicode(_) => {
            format!("{field}: environment variable {name} is not valid UTF-8")
        }
    })
}

/// The child's `OA_CAMERA_USER` / `OA_CAMERA_PASSWORD` for a station: the user info of
/// its source, or the orchestrator's variables named by `camera`, read now (at each
/// start, so that a changed secret is used on the next restart).
pub fn child_env(
    userinfo: Option<&Userinfo>,
    camera: &CameraEnv,
) -> Result<Vec<(&'static str, String)>, String> {
    let user = match &camera.user_env {
        Some(name) => Some(read_var("camera_user_env", name)?),
        None => userinfo.map(|u| u.user.clone()).filter(|u| !u.is_empty()),
    };
    let password = match &camera.password_env {
        Some(name) => Some(read_var("camera_password_env", name)?),
        None => userinfo.and_then(|u| u.password.clone()),
    };
    let mut env = Vec::new();
    if let Some(u) = user {
        env.push((USER_VAR, u));
    }
    if let Some(p) = password {
        env.push((PASSWORD_VAR, p));
    }
    Ok(env)
}

/// Whether a rendered pipeline uses `camerasrc`.
pub fn uses_camerasrc(args: &[String]) -> bool {
    args.iter().any(|a| a == ELEMENT)
}

/// The warning for a station whose pipeline does not use `camerasrc` although it has
/// camera credentials; `None` when there is nothing to warn about.
pub fn legacy_template_warning(
    source: &str,
    pipeline: &str,
    userinfo: bool,
    camera: &CameraEnv,
) -> Option<String> {
    let source = redact_source(source);
    if userinfo {
        Some(format!(
            "pipeline {pipeline} does not use {ELEMENT}: the user name and password of source \
             {source} are on gst-launch-1.0's command line, readable by every local user; use \
             `{ELEMENT} location=\"{{source}}\"` instead of `rtspsrc location=\"{{source}}\" ! \
             decodebin` (see pipelines/rtsp-camera.pipeline), which reads them from \
             {USER_VAR} and {PASSWORD_VAR}"
        ))
    } else if camera.user_env.is_some() || camera.password_env.is_some() {
        Some(format!(
            "pipeline {pipeline} does not use {ELEMENT}: camera_user_env and \
             camera_password_env are passed as {USER_VAR} and {PASSWORD_VAR}, which only \
             {ELEMENT} reads (see pipelines/rtsp-camera.pipeline)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_warning_names_camerasrc_not_the_secret() {
        let w = legacy_template_warning(
            "rtsp://u:pw@cam/x",
            "old.pipeline",
            true,
            &CameraEnv::default(),
        )
        .unwrap();
        assert!(
            w.contains("camerasrc") && w.contains("rtsp://***@cam/x"),
            "{w}"
        );
        assert!(!w.contains("u:pw"), "{w}");
        assert_eq!(
            legacy_template_warning("rtsp://cam/x", "old.pipeline", false, &CameraEnv::default()),
            None
        );
    }

    #[test]
    fn named_variables_win_over_nothing_and_user_info_is_used_otherwise() {
        let info = split_userinfo("rtsp://u:p%21@cam/x").1;
        let env = child_env(info.as_ref(), &CameraEnv::default()).unwrap();
        assert_eq!(
            env,
            vec![(USER_VAR, "u".to_owned()), (PASSWORD_VAR, "p!".to_owned())]
        );
        assert!(child_env(None, &CameraEnv::default()).unwrap().is_empty());
        let missing = CameraEnv {
            user_env: Some("OA_TEST_CAMERA_USER_THAT_IS_NOT_SET".into()),
            password_env: None,
        };
        let err = child_env(None, &missing).unwrap_err();
        assert!(err.starts_with("camera_user_env: "), "{err}");
    }
}
