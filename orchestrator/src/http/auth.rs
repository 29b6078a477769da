//! Bearer tokens for the API.
//!
//! Two scopes: `read` (every `GET`/`HEAD` under the API: stations, orders, frames,
//! expected orders...) and `write` (any other method: the expected-orders `PUT`, `POST`
//! and `DELETE`); a write token grants read too. `/healthz`, `/readyz` and `/metrics`
//! stay open: probes and scrapers send no token, and they serve no customer data.
//!
//! Tokens come from the environment ([`READ_ENV`], [`WRITE_ENV`]: comma-separated) and/or
//! `http.tokens_file` (`read <token>` or `write <token>` per line, `#` comments), never
//! from the configuration file itself. Only their SHA-256 digests are kept, and a token
//! presented is compared with every digest in constant time.
//!
//! Refusals carry no data: 401 with `WWW-Authenticate: Bearer` when the header is
//! missing or malformed or the token unknown, 403 when a read token asks for a write.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};
use crate::config::{ConfigError, HttpConfig};

/// Comma-separated read tokens.
pub const READ_ENV: &str = "OA_API_READ_TOKENS";
/// Comma-separated write tokens (they grant read too).
pub const WRITE_ENV: &str = "OA_API_WRITE_TOKENS";
/// Shorter tokens are refused: they can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// The paths served without a token: probes, metrics and the dashboard's files (the page
/// holds no data; it asks for a token before it reads the API).
const OPEN_PATHS: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    super::dashboard::PATHS[0],
    super::dashboard::PATHS[1],
    super::dashboard::PATHS[2],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    /// A write token grants read.
    pub fn grants(self, needed: Scope) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
        }
    }
}

/// The scope a request needs: `None` for the open paths, read for `GET`/`HEAD`, write for
/// anything else (the expected-orders writes; other paths answer 405 once authorised).
pub fn needed_scope(method: &Method, path: &str) -> Option<Scope> {
    if OPEN_PATHS.contains(&path) {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        Some(Scope::Read)
    } else {
        Some(Scope::Write)
    }
}

/// The accepted tokens, as SHA-256 digests: the tokens themselves are not kept (and so
/// never printed, `Debug` included).
#[derive(Default, Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], Scope)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("read", &self.count(Scope::Read))
            .field("write", &self.count(Scope::Write))
            .finish()
    }
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many tokens have exactly `scope`.
    pub fn count(&self, scope: Scope) -> usize {
        self.entries.iter().filter(|(_, s)| *s == scope).count()
    }

    /// Adds a token; the error says why it is refused, never what it is.
    fn add(&mut self, token: &str, scope: Scope) -> Result<(), String> {
        check_token(token)?;
        self.entries.push((sha256(token.as_bytes()), scope));
        Ok(())
    }

    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    /// The widest scope of `token`, `None` when it is unknown. Every digest is compared,
    /// each in constant time, whether or not an earlier one matched.
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        let digest = sha256(token.as_bytes());
        let mut best = 0u8;
        for (known, scope) in &self.entries {
            let diff = known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            // 1 when diff == 0, else 0, without a branch on the digests.
            let equal = (u16::from(std::hint::black_box(diff)).wrapping_sub(1) >> 8) as u8 & 1;
            best = best.max(equal * scope.rank());
        }
        match best {
            0 => None,
            1 => Some(Scope::Read),
            _ => Some(Scope::Write),
        }
    }

    /// The comma-separated lists of [`READ_ENV`] and [`WRITE_ENV`]; blanks between commas
    /// (and an empty variable) are skipped.
    pub fn from_env_lists(read: Option<&str>, write: Option<&str>) -> Result<Tokens, ConfigError> {
        let mut tokens = Tokens::default();
        for (var, list, scope) in [
            (READ_ENV, read, Scope::Read),
            (WRITE_ENV, write, Scope::Write),
        ] {
            let entries = list.unwrap_or_default().split(',').map(str::trim);
            for (i, t) in entries.filter(|t| !t.is_empty()).enumerate() {
                tokens
                    .add(t, scope)
                    .map_err(|e| ConfigError::new(var, format!("token {}: {e}", i + 1)))?;
            }
        }
        Ok(tokens)
    }

    /// A tokens file's text: `read <token>` or `write <token>` per line, `#` comments (to
    /// the end of the line) and blank lines. Errors name the file and the line (never the token).
    pub fn parse_file(path: &Path, text: &str) -> Result<Tokens, ConfigError> {
        let mut tokens = Tokens::default();
        for (n, line) in text.lines().enumerate() {
            let at = |msg: String| {
                ConfigError::new(
                    "http.tokens_file",
                    format!("{} line {}: {msg}", path.display(), n + 1),
                )
            };
            // A token never holds `#`: the rest of the line is a comment.
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(scope), Some(token), None) = (words.next(), words.next(), words.next())
            else {
                return Err(at("expected `read <token>` or `write <token>`".into()));
            };
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                _ => {
                    return Err(at(
                        "the scope must be `read` or `write` (`read <token>` or `write <token>`)"
                            .into(),
                    ));
                }
            };
            tokens.add(token, scope).map_err(at)?;
        }
        Ok(tokens)
    }

    /// The tokens of the environment (`env` looks a variable up) and of
    /// `http.tokens_file` (relative to the folder of `config_path`), then the bind rule
    /// ([`HttpConfig::check_access`]). `None`: no tokens, the API is open.
    pub fn load(
        http: &HttpConfig,
        config_path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<Tokens>>, ConfigError> {
        let mut tokens =
            Tokens::from_env_lists(env(READ_ENV).as_deref(), env(WRITE_ENV).as_deref())?;
        if let Some(file) = http.tokens_file_in(&config_dir(config_path)) {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::new("http.tokens_file", format!("{}: {e}", file.display()))
            })?;
            let from_file = Tokens::parse_file(&file, &text)?;
            if from_file.is_empty() {
                return Err(ConfigError::new(
                    "http.tokens_file",
                    format!(
                        "{} holds no tokens (`read <token>` or `write <token>` per line); \
                         leave http.tokens_file out to serve the API without tokens",
                        file.display()
                    ),
                ));
            }
            warn_if_world_readable(&file);
            tokens.extend(from_file);
        }
        http.check_access(!tokens.is_empty())?;
        if tokens.is_empty() && !http.bind.ip().to_canonical().is_loopback() {
            tracing::warn!(
                bind = %http.bind,
                "the API is served without tokens beyond loopback (http.allow_anonymous)"
            );
        }
        Ok((!tokens.is_empty()).then(|| Arc::new(tokens)))
    }
}

/// The folder relative paths of the configuration are resolved against.
fn config_dir(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn warn_if_world_readable(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(file)
        && m.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %file.display(),
            "http.tokens_file is readable by every user: chmod 600 it"
        );
    }
}

/// Why a token is refused: too short, or a character a bearer token cannot hold
/// (RFC 6750 `b64token`).
fn check_token(token: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !token.chars().all(allowed) {
        return Err(
            "a token may only hold letters, digits and - . _ ~ + / = (it is sent in an \
             `Authorization: Bearer` header)"
                .into(),
        );
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} characters long; at least {MIN_TOKEN_LEN} are needed, a \
             shorter one can be guessed (e.g. `openssl rand -hex 32`)",
            token.len()
        ));
    }
    Ok(())
}

/// The token of `Authorization: Bearer <token>` (scheme in any case); `None` when the
/// header is missing, repeated or malformed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn refused(status: StatusCode, challenge: &'static str, message: &str) -> Response {
    let mut res = ApiError::new(status, message).into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// The middleware (`from_fn_with_state`): lets a request through when the API is open
/// (`AppState::auth` is `None`), the path is open, or its token has the scope needed.
pub(super) async fn require(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(tokens) = state.auth.as_deref() else {
        return next.run(req).await;
    };
    let Some(needed) = needed_scope(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let refusal = match bearer(req.headers()).map(|t| tokens.scope_of(t)) {
        None => refused(
            StatusCode::UNAUTHORIZED,
            "Bearer",
            "missing or malformed Authorization header: send `Authorization: Bearer <token>`",
        ),
        Some(None) => refused(
            StatusCode::UNAUTHORIZED,
            "Bearer error=\"invalid_token\"",
            "unknown token",
        ),
        Some(Some(scope)) if scope.grants(needed) => return next.run(req).await,
        Some(Some(scope)) => refused(
            StatusCode::FORBIDDEN,
            "Bearer error=\"insufficient_scope\", scope=\"write\"",
            &format!(
                "this token has the {} scope; {} needs the write scope",
                scope.as_str(),
                req.method()
            ),
        ),
    };
    tracing::debug!(
        method = %req.method(),
        path = req.uri().path(),
        status = refusal.status().as_u16(),
        "API request refused"
    );
    refusal
}

/// The digest a token is kept and compared as.
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "read-token-0123456789";
    const R2: &str = "read-token-abcdefghij";
    const W1: &str = "write-token-0123456789";

    #[test]
    fn env_lists() {
        let t = Tokens::from_env_lists(Some(&format!(" {R1} ,,{R2},")), Some(W1)).unwrap();
        assert_eq!((t.count(Scope::Read), t.count(Scope::Write)), (2, 1));
        assert_eq!(t.scope_of(R1), Some(Scope::Read));
        assert_eq!(t.scope_of(R2), Some(Scope::Read));
        assert_eq!(t.scope_of(W1), Some(Scope::Write));
        assert_eq!(t.scope_of("read-token-012345678"), None);
        assert_eq!(t.scope_of(""), None);
        assert!(
            Tokens::from_env_lists(Some(""), Some(" , "))
                .unwrap()
                .is_empty()
        );
        assert!(Tokens::from_env_lists(None, None).unwrap().is_empty());
    }

    #[test]
    fn short_tokens_are_refused_as_guessable_without_showing_them() {
        let e = Tokens::from_env_lists(Some(&format!("{R1},short-secret")), None).unwrap_err();
        assert_eq!(e.field, READ_ENV);
        assert!(e.message.starts_with("token 2: "), "{e}");
        assert!(e.message.contains("12 characters"), "{e}");
        assert!(e.message.contains("at least 16"), "{e}");
        assert!(e.message.contains("guessed"), "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let e = Tokens::from_env_lists(None, Some("0123456789abcde")).unwrap_err();
        assert_eq!(e.field, WRITE_ENV);
        // 16 is enough.
        assert!(Tokens::from_env_lists(None, Some("0123456789abcdef")).is_ok());
        let e = Tokens::from_env_lists(Some("0123456789abcdef\u{e9}"), None).unwrap_err();
        assert!(e.message.contains("letters, digits"), "{e}");
    }

    #[test]
    fn good_file() {
        let text =
            format!("# tokens of the API\n\nread {R1}\n  write\t{W1}  # the till\n\nread {R2}\n");
        let t = Tokens::parse_file(Path::new("/etc/oa/tokens"), &text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.scope_of(R2), Some(Scope::Read));
        assert_eq!(t.scope_of(W1), Some(Scope::Write));
        assert_eq!(
            format!("{t:?}"),
            "Tokens { read: 2, write: 1 }",
            "no token in Debug"
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let path = Path::new("/etc/oa/tokens");
        for (text, line, why) in [
            (format!("read {R1}\n\nadmin {W1}\n"), 3, "`read` or `write`"),
            (format!("# c\n{R1}\n"), 2, "expected `read <token>`"),
            ("read\n".to_owned(), 1, "expected `read <token>`"),
            (format!("read {R1}\nwrite tooshort\n"), 2, "at least 16"),
            (format!("Read {R1}\n"), 1, "`read` or `write`"),
        ] {
            let e = Tokens::parse_file(path, &text).unwrap_err();
            assert_eq!(e.field, "http.tokens_file");
            assert!(
                e.message
                    .starts_with(&format!("/etc/oa/tokens line {line}: ")),
                "{e}"
            );
            assert!(e.message.contains(why), "{e}");
            assert!(!e.message.contains(W1) && !e.message.contains(R1), "{e}");
        }
    }

    #[test]
    fn scope_rules() {
        assert!(Scope::Write.grants(Scope::Read));
        assert!(Scope::Write.grants(Scope::Write));
        assert!(Scope::Read.grants(Scope::Read));
        assert!(!Scope::Read.grants(Scope::Write));
        for open in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(needed_scope(&Method::GET, open), None);
        }
        for read in [
            "/api/stations",
            "/api/orders",
            "/api/orders/s/1/frames/0",
            "/api/expected-orders",
            "/api/expected-orders/x",
            "/healthz/",
            "/nope",
        ] {
            assert_eq!(
                needed_scope(&Method::GET, read),
                Some(Scope::Read),
                "{read}"
            );
            assert_eq!(
                needed_scope(&Method::HEAD, read),
                Some(Scope::Read),
                "{read}"
            );
        }
        for (m, p) in [
            (Method::PUT, "/api/expected-orders/x"),
            (Method::DELETE, "/api/expected-orders/x"),
            (Method::POST, "/api/expected-orders"),
            (Method::POST, "/api/stations"),
        ] {
            assert_eq!(needed_scope(&m, p), Some(Scope::Write), "{m} {p}");
        }
        // A token listed with both scopes has the wider one.
        let t = Tokens::from_env_lists(Some(W1), Some(W1)).unwrap();
        assert_eq!(t.scope_of(W1), Some(Scope::Write));
    }

    #[test]
    fn bearer_header() {
        let with = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for v in v {
                h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            bearer(&h).map(str::to_owned)
        };
        assert_eq!(with(&["Bearer abc"]).as_deref(), Some("abc"));
        assert_eq!(with(&["bearer  abc "]).as_deref(), Some("abc"));
        assert_eq!(with(&[]), None);
        assert_eq!(with(&["Bearer"]), None);
        assert_eq!(with(&["Bearer "]), None);
        assert_eq!(with(&["Basic abc"]), None);
        assert_eq!(with(&["Bearer a b"]), None);
        assert_eq!(with(&["Bearer abc", "Bearer abc"]), None);
    }
}
