//! Camera credentials between the orchestrator and `camerasrc`: the environment variables
//! that carry a camera's user name and password to a pipeline (never its command line,
//! which every local user can read in `/proc/PID/cmdline`), and the user info of a camera
//! URL, split off and decoded, or redacted wherever a URL is shown.

use std::borrow::Cow;

/// The variable `camerasrc` reads the camera's user name from by default.
pub const USER_VAR: &str = "OA_CAMERA_USER";
/// The variable `camerasrc` reads the camera's password from by default.
pub const PASSWORD_VAR: &str = "OA_CAMERA_PASSWORD";

/// Percent-decoded user name and password of a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Userinfo {
    pub user: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Userinfo")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Byte range of the user info (without the `@`) of the URL starting at `url`, if any.
fn userinfo_range(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_len = rest
        .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
        .unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    Some((start, start + at))
}

/// `source` without its user info, and that user info. A source without `scheme://` or
/// without `@` in its authority (before the first `/`, `?` or `#`) comes back unchanged.
pub fn split_userinfo(source: &str) -> (String, Option<Userinfo>) {
    let Some((start, end)) = userinfo_range(source) else {
        return (source.to_owned(), None);
    };
    let info = &source[start..end];
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let stripped = format!("{}{}", &source[..start], &source[end + 1..]);
    let info = Userinfo {
        user: percent_decode(user),
        password: password.map(percent_decode),
    };
    (stripped, Some(info))
}

/// `source` as it may be shown: `rtsp://***@cam/stream` for `rtsp://u:p@cam/stream`.
pub fn redact_source(source: &str) -> Cow<'_, str> {
    match userinfo_range(source) {
        Some((start, end)) => Cow::Owned(format!("{}***{}", &source[..start], &source[end..])),
        None => Cow::Borrowed(source),
    }
}

/// `text` with the user info of every `scheme://user:password@` in it replaced by `***`
/// (a line of a child's output, an error message).
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        match userinfo_range(tail) {
            Some((start, end)) => {
                out.push_str(&tail[..start]);
                out.push_str("***");
                rest = &tail[end..];
            }
            None => {
                out.push_str("://");
                rest = &tail[3..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `%XX` decoded; an invalid escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_split_off_and_decoded() {
        let (url, info) = split_userinfo("rtsp://ad%40min:p%3Ass@cam:554/s?x=1");
        assert_eq!(url, "rtsp://cam:554/s?x=1");
        let info = info.unwrap();
        assert_eq!(info.user, "ad@min");
        assert_eq!(info.password.as_deref(), Some("p:ss"));
        assert!(!format!("{info:?}").contains("p:ss"));
        let (url, info) = split_userinfo("rtsp://viewer@cam/s");
        assert_eq!(url, "rtsp://cam/s");
        assert_eq!(info.unwrap().password, None);
    }

    #[test]
    fn urls_without_user_info_are_unchanged() {
        for u in ["rtsp://cam/s", "rtsp://cam/path@x", "/a/b", "rtsp://cam"] {
            assert_eq!(split_userinfo(u), (u.to_owned(), None));
        }
    }

    #[test]
    fn sources_and_lines_are_shown_without_user_info() {
        assert_eq!(redact_source("rtsp://u:p@cam/x"), "rtsp://***@cam/x");
        assert_eq!(redact_source("rtsp://cam/x@y"), "rtsp://cam/x@y");
        assert_eq!(
            redact_urls(
                "ERROR: from rtspsrc0: Unauthorized (rtsp://u:p%40ss@cam:554/x) and rtsp://v@h"
            ),
            "ERROR: from rtspsrc0: Unauthorized (rtsp://***@cam:554/x) and rtsp://***@h"
        );
        assert_eq!(
            redact_urls("location=\"rtsp://u:p@cam/x\""),
            "location=\"rtsp://***@cam/x\""
        );
        assert_eq!(
            redact_urls("mail me@host, see http://h/a@b"),
            "mail me@host, see http://h/a@b"
        );
    }
}
