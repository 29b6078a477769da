//! The dashboard (`GET /`, `/app.css`, `/app.js`): one page for the people at the
//! counter and their manager, served from inside the binary so that a store needs
//! nothing but the orchestrator. The page holds no data: it reads the API with the
//! user's token, so its three files are served without one.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");

/// The page's paths; served without a token ([`super::auth`]).
pub const PATHS: [&str; 3] = ["/", "/app.css", "/app.js"];

/// Nothing but the orchestrator's own files and API: an injected script or a framing
/// page cannot read the results or the token.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/app.css", get(css))
        .route("/app.js", get(js))
}

#[utoipa::path(get, path = "/", operation_id = "dashboard", tag = "dashboard",
    security(()),
    responses((status = 200, description = "The dashboard page (docs/dashboard.md)", body = String, content_type = "text/html")))]
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(get, path = "/app.css", operation_id = "dashboard_css", tag = "dashboard",
    security(()),
    responses((status = 200, description = "The dashboard's style sheet", body = String, content_type = "text/css")))]
pub(super) async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[utoipa::path(get, path = "/app.js", operation_id = "dashboard_js", tag = "dashboard",
    security(()),
    responses((status = 200, description = "The dashboard's script", body = String, content_type = "text/javascript")))]
pub(super) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // An upgraded binary must not leave an old script talking to a new API.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::http::{AppState, auth};

    async fn get(path: &str, tokens: bool) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut state = AppState::empty();
        if tokens {
            state.auth = Some(Arc::new(
                auth::Tokens::from_env_lists(Some("read-token-0123456789"), None).unwrap(),
            ));
        }
        let res = crate::http::router(Arc::new(state))
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_without_a_token() {
        for (path, kind, needle) in [
            ("/", "text/html", "app.js"),
            ("/app.css", "text/css", "{"),
            ("/app.js", "text/javascript", "use strict"),
        ] {
            let (status, headers, body) = get(path, true).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let ct = headers[axum::http::header::CONTENT_TYPE].to_str().unwrap();
            assert!(ct.starts_with(kind), "{path}: {ct}");
            assert!(body.contains(needle), "{path}");
            let csp = headers[axum::http::header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("script-src 'self'"), "{csp}");
        }
        // The data behind it still asks for one.
        let (status, _, _) = get("/api/orders", true).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [super::INDEX_HTML, super::APP_CSS, super::APP_JS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // Inline scripts and styles would be blocked by the policy.
        assert!(!super::INDEX_HTML.contains("<script>"));
        assert!(!super::INDEX_HTML.contains("style="));
    }
}
