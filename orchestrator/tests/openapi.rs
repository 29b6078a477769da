//! `GET /api/openapi.json` over a real socket: a valid OpenAPI 3.1 document (checked by
//! openapi-spec-validator, which scripts/setup.sh installs), every documented route is
//! served by the router, and every route the router serves is documented.

use std::process::Command;
use std::sync::Arc;

use orchestrator::http::{self, AppState};
use orchestrator::shutdown::Shutdown;
use serde_json::Value;

/// Every (method, path) the router serves; a route added without its annotation fails
/// here, as one documented but not routed fails below.
const ROUTES: [(&str, &str); 22] = [
    ("get", "/"),
    ("get", "/app.css"),
    ("get", "/app.js"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/stations"),
    ("post", "/api/reload"),
    ("get", "/api/orders"),
    ("get", "/api/orders/{station}/{order}"),
    ("get", "/api/orders/{station}/{order}/frames/{n}"),
    ("get", "/api/stats"),
    ("get", "/api/events"),
    ("get", "/api/expected-orders"),
    ("post", "/api/expected-orders"),
    ("get", "/api/expected-orders/{order_id}"),
    ("put", "/api/expected-orders/{order_id}"),
    ("delete", "/api/expected-orders/{order_id}"),
    ("get", "/api/videos"),
    ("post", "/api/videos"),
    ("get", "/api/videos/{id}"),
    ("get", "/api/openapi.json"),
];

#[tokio::test]
async fn the_description_is_valid_openapi_3_1_and_matches_the_routes() {
    let shutdown = Shutdown::new();
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(
        listener,
        Arc::new(AppState::empty()),
        shutdown.listener(),
    ));
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let file = std::env::temp_dir().join(format!("oa-openapi-{}.json", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the description:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut documented: Vec<(String, String)> = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);

    // Each documented route reaches its handler: neither the fallback's 404 nor a 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{station}", "s")
            .replace("{order}", "o")
            .replace("{order_id}", "o")
            .replace("{n}", "0")
            .replace("{id}", "v1");
        let req = client
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{base}{concrete}"),
            )
            .header("content-type", "application/json")
            .body("{}");
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        // With no events configured /api/events is a 404 of its own, not a stream.
        let body = { res.text().await.unwrap() };
        assert!(
            status != 405 && !body.contains("no such endpoint"),
            "{method} {path}: {status} {body}"
        );
    }
    shutdown.trigger();
}
